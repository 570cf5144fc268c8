/* The dashboard's static files (web.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- web.c: the dashboard's static files (docs/CONTRACTS.md "Dashboard") */
/* Opens cfg.web_dir into a->web_fd (-1 when empty). Returns 0 or a negative
 * errno with e saying why (bad configuration). */
int web_configure(struct api *a, struct err_detail *e);
/* Whether path (no query) is the dashboard's to answer: a GET or HEAD
 * outside the api's own prefixes while PADDOCK_WEB_DIR is set (the HTTP
 * layer sends no body to a HEAD). */
bool web_serves(const struct api *a, const char *method, const char *path);
/* Answers GET path from the web dir into r (text, text_len, content_type,
 * cache_control): 0, or -ENOENT with the problem recorded. */
int web_get(struct api_req *r, const char *path);
/* Whether path is one web_get may open: "/"-separated segments of
 * [A-Za-z0-9._-], none empty or starting with '.'. Pure, for unit tests. */
bool web_path_ok(const char *path);
/* The Content-Type of a file name by its extension, NULL if not served. */
const char *web_content_type(const char *name);
