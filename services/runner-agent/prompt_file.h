/* The run's task in the sandbox (docs/CONTRACTS.md "Prompt templates"): the
 * prompt the api rendered at launch (RunRequested.sandbox.prompt) is written
 * to runs/<id>/prompt/prompt.md and bound read-only at /paddock in the
 * sandbox, so the agent reads /paddock/prompt.md (env PADDOCK_PROMPT_FILE)
 * and cannot change what evidence says it was given. */
#pragma once
#include <jansson.h>

#include "core/err.h"
#include "paddock/v1/runs.pb-c.h"
#include "sandbox.h"

#define PROMPT_FILE_DIR "/paddock"
#define PROMPT_FILE_PATH PROMPT_FILE_DIR "/prompt.md"

/* Writes the prompt of snap (nothing when it has none) under sb->run_dir:
 * a 0444 file in a 0555 directory. 0 or a negative errno with reterr set. */
int prompt_file_write(const struct sandbox *sb, const Paddock__V1__SandboxSnapshot *snap, struct err_detail *reterr);

/* When snap has a prompt: appends the read-only bind mount of /paddock to
 * mounts and PADDOCK_PROMPT_FILE to env (config.json arrays, borrowed).
 * 0 or -ENOMEM. */
int prompt_file_add_to_bundle(const struct sandbox *sb, const Paddock__V1__SandboxSnapshot *snap, json_t *mounts,
                              json_t *env);

/* When snap has a prompt: sets data.prompt_sha256, the hex SHA-256 of the
 * bytes the sandbox will read (the `provisioning` status event). */
void prompt_file_event_data(const Paddock__V1__SandboxSnapshot *snap, json_t *data);
