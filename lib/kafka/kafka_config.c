#include "kafka/kafka_config.h"

#include "kafka/consume_loop.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

int kafka_settings_check(const struct kafka_settings *ks, struct err_detail *reterr) {
        static const char *const protocols[] = {"plaintext", "ssl", "sasl_plaintext", "sasl_ssl", NULL};
        bool ok = false;
        for (const char *const *p = protocols; *p && !ok; p++)
                ok = !strcasecmp(*p, ks->security_protocol);
        if (!ok)
                return err_set(reterr, -EINVAL, "config",
                               "PADDOCK_KAFKA_SECURITY_PROTOCOL: want plaintext, ssl, sasl_plaintext or sasl_ssl, not \"%s\"",
                               ks->security_protocol);
        /* the user name is not checked here: operator commands (migrate) share
         * the settings without a Kafka user, and use no broker */
        bool sasl = !strncasecmp(ks->security_protocol, "sasl_", 5);
        if (sasl && !*ks->sasl_mechanism)
                return err_set(reterr, -EINVAL, "config", "PADDOCK_KAFKA_SASL_MECHANISM is required with %s",
                               ks->security_protocol);
        return 0;
}

int kafka_settings_auth(const struct kafka_settings *ks, const char *identity, struct bus_auth **ret,
                        struct err_detail *reterr) {
        if (!*ks->trusted_keys)
                return err_set(reterr, -EINVAL, "config", "PADDOCK_TRUSTED_KEYS is not set");
        if (identity && !*ks->signing_key)
                return err_set(reterr, -EINVAL, "config", "PADDOCK_SIGNING_KEY is not set");
        return bus_auth_new(identity, identity ? ks->signing_key : NULL, ks->trusted_keys, ret, reterr);
}

void kafka_settings_options(struct kafka_settings *ks, const char *client_id, struct bus_auth *auth,
                            struct kafka_options *o) {
        const struct {
                const char *prop, *value;
        } pass[] = {
                {"security.protocol", ks->security_protocol},
                {"ssl.ca.location", ks->ssl_ca_location},
                {"ssl.certificate.location", ks->ssl_certificate_location},
                {"ssl.key.location", ks->ssl_key_location},
                {"sasl.mechanism", ks->sasl_mechanism},
                {"sasl.username", ks->sasl_username},
                {"sasl.password", ks->sasl_password},
        };
        size_t n = 0;
        for (size_t i = 0; i < ELEMENTSOF(pass); i++)
                if (pass[i].value && *pass[i].value) {
                        ks->props_[n++] = pass[i].prop;
                        ks->props_[n++] = pass[i].value;
                }
        ks->props_[n] = NULL;
        *o = (struct kafka_options){.bootstrap = ks->bootstrap, .client_id = client_id,
                                    .session_timeout_ms = (int)ks->session_timeout_ms,
                                    .fetch_wait_max_ms = (int)ks->fetch_wait_ms,
                                    .linger_ms = (int)ks->linger_ms, .security = ks->props_,
                                    .auth = auth};
}

void kafka_options_control(struct kafka_options *o, const struct kafka_settings *ks) {
        o->fetch_wait_max_ms = (int)ks->control_fetch_wait_ms;
}

void kafka_settings_loop_options(const struct kafka_settings *ks, struct kafka_consume_loop_options *lo) {
        lo->batch_max = (int)ks->consume_batch_max;
        lo->linger_ms = (int)ks->consume_linger_ms;
}
