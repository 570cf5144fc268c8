/* JSON requests to the Paddock API over libcurl. Errors come back as
 * application/problem+json; they are printed once here, in the form scripts
 * and people can both read: `error: <detail> (<code>)`. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "cli.h"

#ifndef PADDOCK_VERSION
#define PADDOCK_VERSION "unknown"
#endif

/* A response larger than this is not something the CLI can usefully print. */
#define API_MAX_RESPONSE (64u * 1024u * 1024u)

struct membuf {
        char *data;
        size_t len;
        bool overflow;
};

struct header_state {
        char *location;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct membuf *b = userdata;
        size_t n = size * nmemb;
        if (b->len + n > API_MAX_RESPONSE) {
                b->overflow = true;
                return 0;
        }
        char *d = realloc(b->data, b->len + n + 1);
        if (!d)
                return 0;
        memcpy(d + b->len, ptr, n);
        b->len += n;
        d[b->len] = '\0';
        b->data = d;
        return n;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata) {
        struct header_state *h = userdata;
        size_t n = size * nitems;
        static const char name[] = "location:";

        if (n > STRLEN(name) && strncasecmp(buf, name, STRLEN(name)) == 0) {
                const char *v = buf + STRLEN(name);
                size_t vlen = n - STRLEN(name);
                while (vlen > 0 && (*v == ' ' || *v == '\t'))
                        v++, vlen--;
                while (vlen > 0 && isspace((unsigned char)v[vlen - 1]))
                        vlen--;
                free(h->location);
                h->location = strndup(v, vlen);
        }
        return n;
}

void api_response_done(struct api_response *r) {
        if (!r)
                return;
        json_decref(r->body);
        free(r->location);
        *r = (struct api_response){0};
}

static void curl_easy_cleanupp(CURL **c) {
        if (*c)
                curl_easy_cleanup(*c);
}

static void curl_slist_free_allp(struct curl_slist **l) {
        if (*l)
                curl_slist_free_all(*l);
}

/* What to do about a refused token depends on whose it is: a person logs
 * in again; a service account cannot, a tenant_admin issues it a new token. */
static void print_auth_hint(const struct cli_ctx *ctx, long status, const char *code) {
        char login[160];
        snprintf(login, sizeof login, "paddock login%s%s", ctx->context_explicit ? " --context " : "",
                 ctx->context_explicit ? ctx->context : "");
        if (status == 403 && code && strcmp(code, "password_change_required") == 0) {
                fputs("hint: set a new password first: run `paddock passwd`\n", stderr);
                return;
        }
        if (status != 401 || !ctx->token)
                return;
        bool expired = code && strcmp(code, "token_expired") == 0;
        if (ctx->auth == CLI_AUTH_TOKEN)
                fprintf(stderr,
                        "hint: this API token %s; a service account cannot log in: ask a tenant_admin for a new "
                        "token (`paddock token create SA`), then use it as PADDOCK_TOKEN or save it with "
                        "`paddock login --token-stdin`\n",
                        expired ? "has expired" : "is not valid (revoked, or its account disabled)");
        else
                fprintf(stderr, "hint: the session %s: run `%s`\n",
                        expired ? "has expired" : "is no longer valid", login);
}

/* Prints the problem object the API answered, or what we know without one. */
static void print_problem(const struct cli_ctx *ctx, const char *method, const char *path, long status,
                          json_t *body) {
        const char *detail = json_string_value(json_object_get(body, "detail"));
        const char *code = json_string_value(json_object_get(body, "code"));
        const char *title = json_string_value(json_object_get(body, "title"));

        if (detail || title)
                fprintf(stderr, "error: %s (%s)\n", detail ? detail : title, code ? code : "unknown");
        else
                fprintf(stderr, "error: %s %s answered HTTP %ld\n", method, path, status);
        print_auth_hint(ctx, status, code);
}

int api_request(const struct cli_ctx *ctx, const char *method, const char *path,
                json_t *body, const char *idempotency_key, struct api_response *ret) {
        _cleanup_(curl_easy_cleanupp) CURL *curl = NULL;
        _cleanup_(curl_slist_free_allp) struct curl_slist *headers = NULL;
        _cleanup_free_ char *url = NULL, *auth = NULL, *idem = NULL, *payload = NULL;
        _cleanup_free_ char *resp_data = NULL;
        struct membuf buf = {0};
        struct header_state hs = {0};
        char errbuf[CURL_ERROR_SIZE] = "";
        CURLcode cc;

        *ret = (struct api_response){0};
        if (!ctx->api_url) {
                cli_error("no API URL: pass --api URL, set PADDOCK_API_URL, or start the local "
                          "stack (it writes $PADDOCK_STATE_DIR/endpoints.env)");
                return -EINVAL;
        }
        if (asprintf(&url, "%s%s", ctx->api_url, path) < 0)
                return -ENOMEM;
        curl = curl_easy_init();
        if (!curl)
                return -ENOMEM;

        headers = curl_slist_append(headers, "Accept: application/json, application/problem+json");
        if (ctx->token) {
                if (asprintf(&auth, "Authorization: Bearer %s", ctx->token) < 0)
                        return -ENOMEM;
                headers = curl_slist_append(headers, auth);
        }
        if (idempotency_key) {
                if (asprintf(&idem, "Idempotency-Key: %s", idempotency_key) < 0)
                        return -ENOMEM;
                headers = curl_slist_append(headers, idem);
        }
        if (body) {
                payload = json_dumps(body, JSON_COMPACT);
                if (!payload)
                        return -ENOMEM;
                headers = curl_slist_append(headers, "Content-Type: application/json");
                curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload);
                curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(payload));
        } else if (strcmp(method, "POST") == 0) {
                curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
                curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        }
        if (!headers)
                return -ENOMEM;

        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buf);
        curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(curl, CURLOPT_HEADERDATA, &hs);
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
        /* A 302 to a presigned URL is an answer to report, not to follow. */
        curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 60000L);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_USERAGENT, "paddock-cli/" PADDOCK_VERSION);

        cc = curl_easy_perform(curl);
        resp_data = buf.data;
        if (cc != CURLE_OK) {
                free(hs.location);
                if (buf.overflow) {
                        cli_error("%s %s: response larger than %u bytes", method, path, API_MAX_RESPONSE);
                        return -E2BIG;
                }
                cli_error("could not reach the API at %s: %s", ctx->api_url,
                          errbuf[0] ? errbuf : curl_easy_strerror(cc));
                return -ECONNREFUSED;
        }
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &ret->status);
        ret->location = hs.location;
        if (buf.len > 0)
                ret->body = json_loadb(buf.data, buf.len, 0, NULL);

        if (ret->status >= 400) {
                print_problem(ctx, method, path, ret->status, ret->body);
                return -EPROTO;
        }
        if (buf.len > 0 && !ret->body && ret->status != 302) {
                cli_error("%s %s: the API answered HTTP %ld with a body that is not JSON", method,
                          path, ret->status);
                return -EBADMSG;
        }
        return 0;
}

int api_get(const struct cli_ctx *ctx, const char *path, struct api_response *ret) {
        return api_request(ctx, "GET", path, NULL, NULL, ret);
}
