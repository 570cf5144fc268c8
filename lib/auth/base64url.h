/* Strict base64url (RFC 4648 §5) as JOSE uses it (RFC 7515 §2): URL-safe
 * alphabet, no padding, no whitespace, and canonical only (the unused low bits
 * of the last character must be zero), so that every byte string has exactly
 * one accepted encoding. Thread-safe; no allocation. */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* Decoded size of an encoded length n (an upper bound is exact for valid input). */
#define B64URL_DECODED_LEN(n) (((n) / 4) * 3 + ((n) % 4 ? (n) % 4 - 1 : 0))
/* Encoded size (without NUL) of n bytes. */
#define B64URL_ENCODED_LEN(n) (((n) / 3) * 4 + ((n) % 3 ? (n) % 3 + 1 : 0))

/* Decodes n characters of s (borrowed, need not be NUL-terminated) into out,
 * which must hold B64URL_DECODED_LEN(n) bytes. Returns the number of bytes
 * written, or -EINVAL for a character outside the alphabet (padding included),
 * a length of 1 mod 4, or non-zero trailing bits. The empty string decodes to
 * zero bytes. */
int b64url_decode(const char *s, size_t n, uint8_t *out);

/* Encodes n bytes of in into out, which must hold B64URL_ENCODED_LEN(n) + 1
 * bytes; NUL-terminates. Returns the encoded length (without NUL). */
size_t b64url_encode(const uint8_t *in, size_t n, char *out);
