/* Runner nodes as the scheduler last heard of them (nodes.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- nodes.c: runner nodes as the scheduler last heard of them (its view
 * scheduler.node_status) */
int nodes_list(struct api_req *r);
/* 1 if a live node, ready or draining, has built image (a catalog image
 * name), 0 if none has, or a negative errno (-EAGAIN when the scheduler's
 * view does not exist yet). */
int nodes_image_live(struct db *d, const char *image, struct err_detail *e);
