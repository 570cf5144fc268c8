/* The websocket stream of a run's events (stream.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- stream.c: websocket /v1/runs/{id}/stream */
struct stream_session;
/* Checks a websocket upgrade of /v1/runs/{id}/stream (token, run,
 * PERM_VIEWER): 0 with *ret set when accepted, else the HTTP status to
 * refuse it with (the HTTP layer answers and logs it). caller receives the
 * authenticated caller, if any (user_id "" otherwise). */
int stream_filter(struct api *a, struct lws *wsi, struct stream_session **ret, struct api_caller *caller);
int stream_callback(struct api *a, struct lws *wsi, enum lws_callback_reasons reason,
                    struct stream_session **ssp);
void stream_wake_all(struct api *a);
int stream_plain_http(struct api_req *r);
/* POST /v1/runs/{id}/stream-ticket (PERM_VIEWER in the run's team): 201
 * {ticket, run, expires_at, expires_in_s}, a single-use ticket for the
 * websocket (?ticket=) valid 30 s, stored as its SHA-256, bound to the
 * caller's user, tenant, token and the run. */
int stream_ticket_create(struct api_req *r);
