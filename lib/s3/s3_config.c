#include "s3/s3_config.h"

#include <errno.h>
#include <string.h>

int s3_settings_check(const struct s3_settings *ss, struct err_detail *reterr) {
        if (!*ss->endpoint)
                return err_set(reterr, -EINVAL, "config", "PADDOCK_S3_ENDPOINT: required but not set");
        if (strncmp(ss->endpoint, "http://", 7) != 0 && strncmp(ss->endpoint, "https://", 8) != 0)
                return err_set(reterr, -EINVAL, "config", "PADDOCK_S3_ENDPOINT: \"%s\" is not an http(s) URL",
                               ss->endpoint);
        if (!*ss->bucket)
                return err_set(reterr, -EINVAL, "config", "PADDOCK_S3_BUCKET: required but not set");
        if (!*ss->access_key)
                return err_set(reterr, -EINVAL, "config", "PADDOCK_S3_ACCESS_KEY: required but not set");
        if (!*ss->secret_key)
                return err_set(reterr, -EINVAL, "config", "PADDOCK_S3_SECRET_KEY: required but not set");
        return 0;
}

void s3_settings_config(const struct s3_settings *ss, long timeout_ms, struct s3_config *c) {
        *c = (struct s3_config){.endpoint = ss->endpoint, .region = ss->region, .bucket = ss->bucket,
                                .access_key = ss->access_key, .secret_key = ss->secret_key,
                                .timeout_ms = timeout_ms};
}
