/* Catalog images: read-only root filesystems built on the node from Debian
 * packages (debootstrap, plus npm for the agent CLIs), content-addressed and
 * cached in the image cache dir, PADDOCK_IMAGE_CACHE_DIR, outside any checkout
 * and state dir so a purge or a fresh clone reuses it (docs/CONTRACTS.md
 * "Runner images"):
 *
 *   <cache>/index.json               {"images":{name:{id,recipe_sha256,built_at}}}
 *   <cache>/sha256-<hex>/rootfs      the root filesystem a sandbox mounts read-only
 *   <cache>/sha256-<hex>/metadata.json  name, id, packages, npm, size, built_at
 *   <cache>/.lock                    flock: one build at a time (builds happen in
 *                                    <cache>/.build-*, published by rename)
 *
 * The id is the sha256 of the recipe text followed by the exact package
 * versions that ended up in the rootfs, so two nodes that resolved the same
 * versions agree on it. */
#pragma once
#include <stddef.h>

#define IMAGES_DEFAULT_CACHE_DIR "/var/cache/paddock/images"

/* The `paddock-runner-agent image ...` command line (argv[0] is "image"):
 * `build <name> [--cache-dir DIR] [--rebuild]` and `list [--cache-dir DIR]`.
 * default_cache_dir may be NULL (IMAGES_DEFAULT_CACHE_DIR). Single-threaded
 * caller only (it spawns debootstrap, chroot and npm). Returns an exit code. */
int images_main(int argc, char **argv, const char *default_cache_dir);

/* Resolves an image reference (a catalog name, or "sha256:<hex>" /
 * "sha256-<hex>") to the rootfs directory of a built image in cache_dir.
 * On success *ret_rootfs is a malloc'd absolute path (caller frees). Returns
 * 0, -ENOENT when no such image is built on this node, -EINVAL for a malformed
 * reference, or another negative errno. Thread-safe (reads index.json, which
 * is only ever replaced by rename). */
int images_resolve(const char *cache_dir, const char *ref, char **ret_rootfs);

/* Names of the catalog images built on this node whose rootfs is present, for
 * heartbeats. Returns a malloc'd array of *ret_n malloc'd strings (caller
 * frees each and the array), or NULL when there are none or on error.
 * Thread-safe. */
char **images_available(const char *cache_dir, size_t *ret_n);
