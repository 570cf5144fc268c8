/* Operator commands and migrations (bootstrap.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- bootstrap.c */
int bootstrap_main(struct api *a, int argc, char **argv);
/* Applies the api schema's migrations, waiting up to wait_s for PostgreSQL
 * (stops early on shutdown); logs the outcome. Returns as pg_migrate_wait(). */
int api_migrate(struct api *a, int wait_s);
