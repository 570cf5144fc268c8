/* The sandbox spec validator (services/api/spec_validate.c) as the api runs it
 * on POST /v1/sandboxes and PUT /v1/sandboxes/{id}/draft (sandboxes.c): the
 * request body (NUL-terminated, as the HTTP layer keeps it) loaded by
 * api_body_object(), its fields checked, then spec_validate() on "spec".
 *
 * Where a spec names catalog items, spec_validate resolves them in the
 * tenant's catalog (policy.c, SQL): the request here has a caller whose
 * tenant id is not a UUID, so db_open() refuses it before any connection
 * and the validation ends there with an error; everything before it is the
 * parser of the untrusted document. The api's platform egress floor (which
 * inline egress rules are checked against) holds an operator range, as
 * PADDOCK_EGRESS_FLOOR would. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "core/log.h"
#include "fuzz.h"
#include "net/addr_policy.h"

static struct api api;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        /* the refused catalog lookup logs an error per input (db_fail): a
         * level above error keeps the fuzzer's own output readable */
        log_init("fuzz", (enum log_level)(LOG_ERROR + 1));
        if (addr_floor_new("10.96.0.0/12", &api.floor, NULL) < 0)
                abort();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *body = malloc(size + 1);
        if (!body)
                return 0;
        memcpy(body, data, size);
        body[size] = 0;
        struct api_req r = {.api = &api, .method = "POST", .body = body, .body_len = size, .perm = PERM_NONE};
        snprintf(r.caller.tenant_id, sizeof r.caller.tenant_id, "fuzz");
        json_t *doc = NULL;
        if (api_body_object(&r, &doc) >= 0 &&
            api_known_fields(&r, doc, (const char *const[]){"name", "team", "spec", NULL}) >= 0) {
                int k = spec_validate(&r, json_object_get(doc, "spec"));
                if (k < 0 && !r.pcode)
                        __builtin_trap(); /* a refusal always names its problem */
        }
        json_decref(doc);
        json_decref(r.out);
        free(r.text);
        free(r.location);
        free(body);
        return 0;
}
