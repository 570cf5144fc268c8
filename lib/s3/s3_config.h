/* The S3 settings the api (presigned artifact URLs) and evidence (artifact
 * uploads) share, in one place so that they cannot drift apart (they had: the
 * api's were optional with one set of descriptions, evidence's required with
 * another). A service embeds `struct s3_settings s3;` in its settings and puts
 * S3_CONFIG_ENTRIES(struct settings, s3) in its table. The entries default to
 * empty so that commands which need no storage (`migrate`, the api's
 * `bootstrap`) run without them; a daemon that serves calls s3_settings_check. */
#pragma once
#include <stddef.h>

#include "core/config.h"
#include "core/err.h"
#include "s3/s3.h"

struct s3_settings {
        char *endpoint;
        char *bucket;
        char *access_key;
        char *secret_key; /* sensitive */
        char *region;
};

#define S3_CONFIG_OFF_(st, m, f) (offsetof(st, m) + offsetof(struct s3_settings, f))
#define S3_CONFIG_ENTRIES(st, m)                                                                                       \
        {"PADDOCK_S3_ENDPOINT", CONFIG_STRING, "", 0, 0, false, S3_CONFIG_OFF_(st, m, endpoint),                      \
         "S3-compatible endpoint URL, e.g. http://127.0.0.1:7480 (path-style; required to serve)"},                  \
        {"PADDOCK_S3_BUCKET", CONFIG_STRING, "", 0, 0, false, S3_CONFIG_OFF_(st, m, bucket),                          \
         "bucket holding artifacts under tenants/<tenant>/runs/<run>/<name> (required to serve)"},                   \
        {"PADDOCK_S3_ACCESS_KEY", CONFIG_STRING, "", 0, 0, false, S3_CONFIG_OFF_(st, m, access_key),                  \
         "S3 access key id (required to serve)"},                                                                     \
        {"PADDOCK_S3_SECRET_KEY", CONFIG_STRING, "", 0, 0, true, S3_CONFIG_OFF_(st, m, secret_key),                   \
         "S3 secret access key (required to serve)"},                                                                 \
        {"PADDOCK_S3_REGION", CONFIG_STRING, "us-east-1", 0, 0, false, S3_CONFIG_OFF_(st, m, region),                 \
         "S3 region used in SigV4 signatures"}

/* Checks what serving needs: an http(s) endpoint, a bucket and both keys.
 * Returns 0, or -EINVAL with reterr naming the first setting missing or wrong
 * (never quoting the secret key). */
int s3_settings_check(const struct s3_settings *ss, struct err_detail *reterr);
/* Fills *c from ss (borrowed: ss must outlive c) with the given timeout. */
void s3_settings_config(const struct s3_settings *ss, long timeout_ms, struct s3_config *c);
