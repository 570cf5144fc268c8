/* Catalog images: read-only root filesystems built on the node from Debian
 * packages (debootstrap, plus npm for the agent CLIs), content-addressed and
 * cached under <state dir>/images (docs/CONTRACTS.md "Runner images"):
 *
 *   images/index.json               {"images":{name:{id,recipe_sha256,built_at}}}
 *   images/sha256-<hex>/rootfs      the root filesystem a sandbox mounts read-only
 *   images/sha256-<hex>/metadata.json  name, id, packages, npm, size, built_at
 *
 * The id is the sha256 of the recipe text followed by the exact package
 * versions that ended up in the rootfs, so two nodes that resolved the same
 * versions agree on it. */
#pragma once
#include <stddef.h>

/* The `paddock-runner-agent image ...` command line (argv[0] is "image"):
 * `build <name> [--state-dir DIR] [--rebuild]` and `list [--state-dir DIR]`.
 * default_state_dir may be NULL (/var/lib/paddock-runner). Single-threaded
 * caller only (it spawns debootstrap, chroot and npm). Returns an exit code. */
int images_main(int argc, char **argv, const char *default_state_dir);

/* Resolves an image reference (a catalog name, or "sha256:<hex>" /
 * "sha256-<hex>") to the rootfs directory of a built image in state_dir.
 * On success *ret_rootfs is a malloc'd absolute path (caller frees). Returns
 * 0, -ENOENT when no such image is built on this node, -EINVAL for a malformed
 * reference, or another negative errno. Thread-safe (reads index.json, which
 * is only ever replaced by rename). */
int images_resolve(const char *state_dir, const char *ref, char **ret_rootfs);

/* Names of the catalog images built on this node whose rootfs is present, for
 * heartbeats. Returns a malloc'd array of *ret_n malloc'd strings (caller
 * frees each and the array), or NULL when there are none or on error.
 * Thread-safe. */
char **images_available(const char *state_dir, size_t *ret_n);
