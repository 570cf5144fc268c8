/* A run's artifacts (artifacts.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- artifacts.c */
int artifacts_list(struct api_req *r);
int artifacts_get(struct api_req *r);
