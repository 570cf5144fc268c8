/* Unguessable identifiers. Thread-safe. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define UUID_STR_LEN 37 /* 36 chars + NUL */

/* Writes a random (v4) UUID from OpenSSL's CSPRNG into buf[UUID_STR_LEN].
 * Returns 0 or -EIO if the generator failed. */
int id_new_uuid(char buf[static UUID_STR_LEN]);
/* True if s is a canonical lower-case UUID string. */
bool id_is_uuid(const char *s);
/* True if s is a model id as the catalog spells them: 1-ID_MODEL_MAX
 * characters of A-Z a-z 0-9 . _ : / @ - (the model gateway keeps per-model
 * usage under such names only, billing accepts only them, and "*"). */
#define ID_MODEL_MAX 128
bool id_is_model(const char *s);
/* Fills buf with n random bytes, hex-encoded (2n chars + NUL). Returns 0 or -EIO. */
int id_random_hex(char *buf, size_t n);
/* Hex-encodes n bytes into out (2n + 1 bytes). */
void hex_encode(const unsigned char *in, size_t n, char *out);
/* The value of one hex digit (either case), or -1. */
int hex_value(unsigned char c);
