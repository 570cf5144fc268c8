/* Destroying a sandbox and proving it is gone: the crun container, every
 * mount mentioning the run, the netns file, the cgroup dirs and the run dir
 * (bundle, workspace, baseline). */
#pragma once
#include <jansson.h>

#include "agent.h"
#include "sandbox.h"

/* Destroys everything of sb (each step tolerates "already gone"), then checks
 * each item. Returns 0 if all are verified gone, else -EBUSY. *verified_gone
 * and *still_present are new JSON arrays (caller owns) of item names among
 * "container", "mounts", "netns", "cgroup", "processes", "workspace". */
int cleanup_destroy(const struct agent *a, struct sandbox *sb, json_t **verified_gone,
                    json_t **still_present);

/* Removes leftovers of runs a previous process did not finish (crash): every
 * runs/<id> and netns/<id> found at start. Logs what it did. */
void cleanup_leftovers(const struct agent *a);
