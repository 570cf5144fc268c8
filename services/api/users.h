/* Users of the caller's tenant (users.c, tenant_admin). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- users.c: users of the caller's tenant (tenant_admin) */
int users_list(struct api_req *r);
int users_create(struct api_req *r);
int users_patch(struct api_req *r);
int users_delete(struct api_req *r);
