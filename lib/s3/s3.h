/* S3 client over libcurl with AWS SigV4 (path-style URLs), plus presigned GET
 * URLs computed here with OpenSSL HMAC-SHA256. HTTP errors are translated
 * once: 404 -> -ENOENT, 403 -> -EACCES, 409 -> -EEXIST, 5xx/transport -> -EIO
 * or -ECONNRESET, with the S3 error code/message in *reterr. Thread-safe (one
 * curl easy handle per call). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct s3_config {
        const char *endpoint;    /* "http://127.0.0.1:7480" */
        const char *region;      /* "us-east-1" */
        const char *bucket;
        const char *access_key;
        const char *secret_key;  /* sensitive */
        long timeout_ms;
};

struct s3_client;

/* Copies cfg. NULL only on out-of-memory. */
struct s3_client *s3_client_new(const struct s3_config *cfg);
struct s3_client *s3_client_free(struct s3_client *c);
/* Creates the configured bucket; -EEXIST if it is already there (ours). */
int s3_create_bucket(struct s3_client *c, struct err_detail *reterr);
/* PUTs data as key (sends x-amz-content-sha256 of the body). */
int s3_put_object(struct s3_client *c, const char *key, const void *data, size_t len,
                  const char *content_type, struct err_detail *reterr);
/* GETs key into a malloc'd buffer (caller frees), at most max_len bytes (-E2BIG beyond). */
int s3_get_object(struct s3_client *c, const char *key, size_t max_len, char **ret_data,
                  size_t *ret_len, struct err_detail *reterr);
/* HEADs key; -ENOENT if absent. */
int s3_head_object(struct s3_client *c, const char *key, uint64_t *ret_size,
                   struct err_detail *reterr);
int s3_delete_object(struct s3_client *c, const char *key, struct err_detail *reterr);
/* ---- object lock (issue 14 §3; docs/CONTRACTS.md "Retention and legal hold") */
#define S3_VERSION_ID_MAX 256
/* 1 if the bucket was created with object lock enabled, 0 if not (or the
 * store does not know object lock), or a negative errno. */
int s3_bucket_object_lock(struct s3_client *c, struct err_detail *reterr);
/* s3_put_object() with GOVERNANCE retention until retain_until_s (seconds
 * since the epoch, the store's clock), legal hold ON when legal_hold, and
 * Content-MD5; the new version's id into ret_version_id ("" if the store
 * names none). */
int s3_put_object_locked(struct s3_client *c, const char *key, const void *data, size_t len,
                         const char *content_type, int64_t retain_until_s, bool legal_hold,
                         char ret_version_id[S3_VERSION_ID_MAX], struct err_detail *reterr);
/* Sets the legal hold of one version of key ON or OFF (PUT ?legal-hold):
 * while ON no one deletes that version, bypass-governance or not. */
int s3_put_object_legal_hold(struct s3_client *c, const char *key, const char *version_id, bool on,
                             struct err_detail *reterr);
/* Deletes one version of key for good; bypass_governance sends
 * x-amz-bypass-governance-retention (needed while its retention lasts:
 * without it the store refuses, -EACCES). */
int s3_delete_object_version(struct s3_client *c, const char *key, const char *version_id, bool bypass_governance,
                             struct err_detail *reterr);
/* Presigned GET URL valid for expires_s seconds (1..604800), malloc'd (caller frees). */
int s3_presign_get(struct s3_client *c, const char *key, int expires_s, char **ret_url,
                   struct err_detail *reterr);
/* Percent-encodes s per SigV4 (unreserved A-Za-z0-9-._~, and '/' kept when keep_slash). Caller frees. */
char *s3_uri_encode(const char *s, int keep_slash);
