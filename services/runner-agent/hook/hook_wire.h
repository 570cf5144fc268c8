/* The hook protocol's framing (docs/CONTRACTS.md "Hook bridge"): a 4-byte
 * big-endian length, then that many bytes of JSON, both ways, 1..HOOK_WIRE_MAX.
 * The one implementation for both ends: paddock-hook in the sandbox (linked
 * statically, so this file needs only libc) and the runner-agent's hook
 * server. Blocking; no timeout (the runner owns the deadline of a held call). */
#pragma once
#include <stddef.h>

#define HOOK_WIRE_MAX (1u << 20)

/* Sends one frame (MSG_NOSIGNAL: a peer gone is an error, not a signal).
 * Returns 0, -EMSGSIZE for an empty or oversized body, or a negative errno. */
int hook_wire_send(int fd, const void *body, size_t len);

/* Receives one frame into a malloc'd buffer (*ret, caller frees; NUL-terminated,
 * *ret_len without it). Returns 0, -EPIPE on EOF before the frame, -EBADMSG
 * on EOF inside it (cut), -EMSGSIZE
 * for a length of 0 or over HOOK_WIRE_MAX (nothing more is read), -ENOMEM, or
 * a negative errno. */
int hook_wire_recv(int fd, char **ret, size_t *ret_len);
