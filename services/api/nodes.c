/* Runner nodes as the scheduler last heard of them: GET /v1/nodes, and the
 * launch check that a run's image is on some ready node. The api reads the
 * scheduler's one shared view, scheduler.node_status (scheduler migration
 * 0004), never its tables. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "pg/pg.h"

int nodes_image_live(struct db *d, const char *image, struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {image};
        /* a draining node counts: the run waits for its undrain, or for
         * another node with the image (the scheduler's placement) */
        int k = pg_exec(d->conn,
                        "SELECT EXISTS (SELECT 1 FROM scheduler.node_status"
                        " WHERE state IN ('ready', 'draining') AND $1 = ANY (images))",
                        1, params, &res, e);
        if (k < 0)
                /* the view is the scheduler's: until it has migrated there is nothing
                 * to read (-ENOPKG, lib/pg) */
                return k == -ENOPKG ? -EAGAIN : k;
        return PQgetvalue(res, 0, 0)[0] == 't';
}

int nodes_list(struct api_req *r) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_pgres_ PGresult *res = NULL;
        k = pg_exec(d.conn,
                    "SELECT node_id, state, " DB_TS("last_seen") ", version, array_to_json(images)::text, capacity_slots, "
                    "capacity_cpus, capacity_memory_mb, used_slots, used_cpus, used_memory_mb "
                    "FROM scheduler.node_status ORDER BY node_id",
                    0, NULL, &res, &e);
        if (k == -ENOPKG) /* the scheduler has not migrated yet */
                return api_errno(r, -EAGAIN, "the nodes are not known yet");
        if (k < 0)
                return db_fail(r, k, &e, "list nodes");
        _cleanup_json_ json_t *items = json_array();
        if (!items)
                return api_errno(r, -ENOMEM, "out of memory");
        for (int i = 0; i < PQntuples(res); i++) {
                json_t *images = json_loads(PQgetvalue(res, i, 4), 0, NULL);
                json_t *it = json_pack("{s:s, s:s, s:s, s:o, s:o, s:{s:I, s:f, s:I}, s:{s:I, s:f, s:I}}", "id",
                                       PQgetvalue(res, i, 0), "state", PQgetvalue(res, i, 1), "last_seen",
                                       PQgetvalue(res, i, 2), "version", db_json_str(res, i, 3), "images",
                                       images ? images : json_array(), "capacity", "slots",
                                       (json_int_t)atoll(PQgetvalue(res, i, 5)), "cpus", atof(PQgetvalue(res, i, 6)),
                                       "memory_mb", (json_int_t)atoll(PQgetvalue(res, i, 7)), "used", "slots",
                                       (json_int_t)atoll(PQgetvalue(res, i, 8)), "cpus", atof(PQgetvalue(res, i, 9)),
                                       "memory_mb", (json_int_t)atoll(PQgetvalue(res, i, 10)));
                /* the key its reports are verified with (docs/CONTRACTS.md, signed messages) */
                char identity[BUS_AUTH_SIGNER_MAX], pub[SIGN_PUBLIC_KEY_B64_LEN + 1];
                snprintf(identity, sizeof identity, "node:%s", PQgetvalue(res, i, 0));
                if (it)
                        json_object_set_new(it, "public_key",
                                            r->api->auth && bus_auth_public_key(r->api->auth, identity, pub) == 0
                                                    ? json_string(pub)
                                                    : json_null());
                if (!it || json_array_append_new(items, it) < 0)
                        return api_errno(r, -ENOMEM, "out of memory");
        }
        r->out = json_pack("{s:O, s:n}", "items", items, "next_cursor");
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}
