/* Failed-login limits (ratelimit.c), counted in PostgreSQL so every worker and replica shares them. */
#pragma once
#include "request.h"
#include "db.h"

/* ---- ratelimit.c: failed logins per (user, source address) and per source
 * address, counted in PostgreSQL (shared by every api worker and replica) */
/* Seconds until a login of tenant/username from ip (api_client_ip) may be
 * tried (0: now). ip may be "" (unknown): then only the user from unknown
 * sources is limited. Strings borrowed. */
int64_t ratelimit_login_check(struct api *a, const char *tenant, const char *username, const char *ip);
/* Counts a failed login against the user and the source. */
void ratelimit_login_failed(struct api *a, const char *tenant, const char *username, const char *ip);
/* A successful login clears the user's count from that source (not the
 * source's: one valid account must not reset a source that guesses at others). */
void ratelimit_login_succeeded(struct api *a, const char *tenant, const char *username, const char *ip);
