/* `paddock-api bootstrap --tenant NAME --admin USER [--password-stdin]`:
 * migrations, the first tenant, its admin (tenant_admin) and team "default".
 * Idempotent: an existing tenant is left alone. Without --password-stdin the
 * admin gets a generated one-time password, printed once on stdout, which
 * must be changed at first login; with it, the operator's password (the
 * first line of stdin, 12 to 1024 bytes), which need not be. */
#include <errno.h>
#include <getopt.h>
#include <string.h>

#include "api.h"
#include "service/service.h"
#include "core/log.h"
#include "pg/pg.h"

#define ALL_ROLES "{tenant_admin,security_admin,sandbox_author,launcher,approver,reviewer,viewer}"

/* Logs each wait for PostgreSQL (a pg_retry_fn). */
int api_migrate(struct api *a, int wait_s) {
        return service_migrate(a->pg, "api", api_migrations, wait_s * 1000);
}

static bool name_ok(const char *s) {
        size_t n = s ? strlen(s) : 0;
        return n > 0 && n <= 128 &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

#define PASSWORD_MIN 12
#define PASSWORD_MAX 1024

/* Reads the first line of stdin (without its newline) into buf: 0, or
 * -EINVAL (none, too short, too long) with the reason printed. */
static int password_from_stdin(char *buf, size_t size) {
        if (!fgets(buf, (int)size, stdin)) {
                fprintf(stderr, "paddock-api bootstrap: --password-stdin: no password on stdin\n");
                return -EINVAL;
        }
        size_t n = strcspn(buf, "\n");
        bool whole = buf[n] == '\n' || feof(stdin);
        buf[n] = '\0';
        if (n > 0 && buf[n - 1] == '\r')
                buf[--n] = '\0';
        if (!whole || n < PASSWORD_MIN || n > PASSWORD_MAX) {
                fprintf(stderr, "paddock-api bootstrap: --password-stdin: the password must be %d to %d bytes\n",
                        PASSWORD_MIN, PASSWORD_MAX);
                return -EINVAL;
        }
        return 0;
}

int bootstrap_main(struct api *a, int argc, char **argv) {
        const char *tenant = NULL, *admin = NULL;
        bool from_stdin = false;
        static const struct option opts[] = {{"tenant", required_argument, NULL, 't'},
                                             {"admin", required_argument, NULL, 'a'},
                                             {"password-stdin", no_argument, NULL, 'p'},
                                             {NULL, 0, NULL, 0}};
        int c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                if (c == 't')
                        tenant = optarg;
                else if (c == 'a')
                        admin = optarg;
                else if (c == 'p')
                        from_stdin = true;
                else
                        return 64;
        }
        if (!name_ok(tenant) || !name_ok(admin)) {
                fprintf(stderr, "usage: paddock-api bootstrap --tenant NAME --admin USER [--password-stdin]\n"
                                "  names: 1-128 characters of A-Z a-z 0-9 . _ -\n"
                                "  --password-stdin: the admin's password is the first line of stdin (12 to 1024\n"
                                "  bytes); otherwise a one-time password is printed, to be changed at first login\n");
                return 64;
        }
        /* + newline and NUL, and one more byte to tell a longer line */
        char password[PASSWORD_MAX + 3];
        if (from_stdin && password_from_stdin(password, sizeof password) < 0)
                return 64;
        if (api_migrate(a, 30) < 0) {
                explicit_bzero(password, sizeof password);
                return 1;
        }

        struct err_detail e = {0};
        char tenant_id[UUID_STR_LEN], user_id[UUID_STR_LEN], team_id[UUID_STR_LEN];
        _cleanup_free_ char *hash = NULL;
        if (id_new_uuid(tenant_id) < 0 || id_new_uuid(user_id) < 0 || id_new_uuid(team_id) < 0 ||
            (!from_stdin && id_random_hex(password, 16) < 0) || auth_hash_password(password, &hash) < 0) {
                explicit_bzero(password, sizeof password);
                log_error("could not generate credentials");
                return 1;
        }
        /* as the new tenant: row-level security accepts only its rows */
        _cleanup_db_ struct db d = {0};
        if (db_open(&d, a, tenant_id, &e) < 0) {
                log_error("could not connect to postgresql: %s", e.message);
                return 1;
        }
        _cleanup_json_ json_t *change = NULL;
        /* before the first goto: fail's scope holds it (clang refuses the jump) */
        _cleanup_pgres_ PGresult *res = NULL;
        if (db_begin(&d, &e) < 0)
                goto fail;
        const char *tp[] = {tenant_id, tenant};
        if (pg_exec(d.conn, "INSERT INTO api.tenants (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING "
                            "RETURNING id", 2, tp, &res, &e) < 0)
                goto fail;
        if (PQntuples(res) == 0) {
                db_rollback(&d);
                explicit_bzero(password, sizeof password);
                printf("tenant exists\n");
                return 0;
        }
        /* a generated password is one-time: it must be changed at first login */
        const char *up[] = {user_id, tenant_id, admin, hash, from_stdin ? "f" : "t"};
        const char *teamp[] = {team_id, tenant_id};
        const char *mp[] = {team_id, user_id, tenant_id};
        if (pg_exec(d.conn, "INSERT INTO api.users (id, tenant_id, username, password_hash, tenant_roles, "
                            "password_change_required) VALUES ($1, $2, $3, $4, '{tenant_admin}', $5::boolean)",
                    5, up, NULL, &e) < 0 ||
            pg_exec(d.conn, "INSERT INTO api.teams (id, tenant_id, name) VALUES ($1, $2, 'default')", 2, teamp,
                    NULL, &e) < 0 ||
            pg_exec(d.conn, "INSERT INTO api.team_members (team_id, user_id, tenant_id, roles) "
                            "VALUES ($1, $2, $3, '" ALL_ROLES "')", 3, mp, NULL, &e) < 0)
                goto fail;
        /* the tenant's chain starts with its own creation (hash of names and ids only) */
        change = json_pack("{s:s, s:s, s:s, s:s, s:b}", "tenant", tenant, "admin", admin, "admin_id", user_id,
                           "team_id", team_id, "password_change_required", !from_stdin);
        if (api_audit_operator(a, &d, tenant_id, "tenant.bootstrap", "tenant", tenant_id, change, &e) < 0 ||
            db_commit(&d, &e) < 0)
                goto fail;
        log_ctx(LOG_INFO, LOG_KV("tenant", tenant_id, "user", user_id, "team", team_id), "tenant bootstrapped");
        if (from_stdin)
                printf("tenant %s created with admin %s\n", tenant, admin);
        else
                printf("password: %s\n", password);
        fflush(stdout);
        explicit_bzero(password, sizeof password);
        return 0;
fail:
        db_rollback(&d);
        explicit_bzero(password, sizeof password);
        log_error("could not bootstrap tenant: %s", e.message);
        return 1;
}
