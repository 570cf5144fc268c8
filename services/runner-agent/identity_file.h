/* Workload identity tokens as files (docs/CONTRACTS.md "Workload identity"):
 * each spec.identity entry delivered as {"file": NAME} is the read-only file
 * /paddock/identity/NAME in the sandbox, readable by the sandbox user only.
 * The files live on a small tmpfs of their own at runs/<id>/identity (never
 * on a disk, like the config.json holding env secrets), bound read-only; the
 * cleanup's unmount of everything naming the run frees them. */
#pragma once
#include <jansson.h>

#include "core/err.h"
#include "sandbox.h"
#include "secrets.h"

#define IDENTITY_FILE_DIR "/paddock/identity"

/* Writes the n files (borrowed) on the run's identity tmpfs, owned by the
 * sandbox user, mode 0400, and sets sb->identity_files; nothing when n is 0.
 * Returns 0 or a negative errno with reterr (never quoting a value). */
int identity_file_write(struct sandbox *sb, const struct secret_file *files, size_t n, struct err_detail *reterr);

/* When sb->identity_files: appends the read-only bind of /paddock/identity to
 * mounts (config.json's array, borrowed), and the one of /paddock under it if
 * no other part of the run bound it. 0 or -ENOMEM. */
int identity_file_add_to_bundle(const struct sandbox *sb, json_t *mounts);
