/* The one route table (routes.c): each route names its handler and the permission it needs. */
#pragma once
#include "request.h"
#include "db.h"

/* ---- routes.c: the one route table */
struct api_route {
        const char *method;
        const char *pattern; /* "{x}" segments capture into req->params in order */
        api_handler_fn handler;
        enum api_perm perm;
};
/* The route for method and path, its captures in caps (the caller frees
 * them); NULL if none, with *ret_path_known true when the path is served
 * for another method (405 rather than 404). */
const struct api_route *routes_find(const char *method, const char *path, char **caps, bool *ret_path_known);
