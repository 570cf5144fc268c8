/* `paddock-api import-skills --tenant NAME DIR`: adds skills to a tenant's
 * catalog from a folder of SKILL.md directories, validated as the API
 * validates them (catalog_validate.c), audited as an operator's write. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "api.h"
#include "core/log.h"

/* ---- `paddock-api import-skills --tenant NAME DIR` */

/* Appends the regular files under dir (relative names prefixed by rel) to
 * files, skipping SKILL.md at the top and dot files; bounded in count and size. */
static int collect_files(const char *dir, const char *rel, int depth, json_t *files, size_t *total,
                         struct err_detail *e) {
        if (depth > 4)
                return 0;
        struct dirent **ents = NULL;
        int n = scandir(dir, &ents, NULL, alphasort);
        if (n < 0)
                return err_set(e, -errno, "io", "%s: %s", dir, strerror(errno));
        int k = 0;
        for (int i = 0; i < n; i++) {
                const char *nm = ents[i]->d_name;
                if (k < 0 || nm[0] == '.' || (depth == 0 && !strcmp(nm, "SKILL.md")))
                        continue;
                char path[4096], relp[1024];
                snprintf(path, sizeof path, "%s/%s", dir, nm);
                snprintf(relp, sizeof relp, "%s%s%s", rel, rel[0] ? "/" : "", nm);
                struct stat st;
                if (lstat(path, &st) < 0)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        k = collect_files(path, relp, depth + 1, files, total, e);
                        continue;
                }
                if (!S_ISREG(st.st_mode))
                        continue; /* no symlinks out of the folder */
                if (json_object_size(files) >= SKILL_FILES_MAX || *total + (size_t)st.st_size > SKILL_BYTES_MAX) {
                        k = err_set(e, -E2BIG, "too_large", "%s: a skill may hold at most %d files and %d bytes",
                                    path, SKILL_FILES_MAX, SKILL_BYTES_MAX);
                        continue;
                }
                FILE *f = fopen(path, "re");
                if (!f) {
                        k = err_set(e, -errno, "io", "%s: %s", path, strerror(errno));
                        continue;
                }
                char *buf = malloc((size_t)st.st_size + 1);
                size_t got = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
                fclose(f);
                if (buf) {
                        json_object_set_new(files, relp, json_stringn(buf, got));
                        *total += got;
                }
                free(buf);
        }
        for (int i = 0; i < n; i++)
                free(ents[i]);
        free(ents);
        return k;
}

/* SKILL.md: "---" line, "key: value" lines (name, description), "---" line,
 * then the instructions. */
static int parse_skill_md(const char *text, char **name, char **desc, const char **instructions,
                          struct err_detail *e) {
        if (strncmp(text, "---\n", 4))
                return err_set(e, -EINVAL, "invalid_field", "SKILL.md must start with a \"---\" front matter line");
        const char *s = text + 4;
        for (;;) {
                const char *nl = strchr(s, '\n');
                if (!nl)
                        return err_set(e, -EINVAL, "invalid_field", "SKILL.md: front matter is not closed by \"---\"");
                size_t len = (size_t)(nl - s);
                if (len == 3 && !strncmp(s, "---", 3)) {
                        *instructions = nl + 1;
                        break;
                }
                const char *colon = memchr(s, ':', len);
                if (colon) {
                        const char *v = colon + 1;
                        while (v < nl && *v == ' ')
                                v++;
                        size_t vl = (size_t)(nl - v);
                        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\r'))
                                vl--;
                        if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0])
                                v++, vl -= 2;
                        size_t kl = (size_t)(colon - s);
                        if (kl == 4 && !strncmp(s, "name", 4)) {
                                free(*name);
                                *name = strndup(v, vl);
                        } else if (kl == 11 && !strncmp(s, "description", 11)) {
                                free(*desc);
                                *desc = strndup(v, vl);
                        }
                }
                s = nl + 1;
        }
        if (!*name || !catalog_name_ok(*name))
                return err_set(e, -EINVAL, "invalid_field", "SKILL.md: name: must be 1 to %d characters of A-Z a-z 0-9 . _ -",
                               CATALOG_NAME_MAX);
        return 0;
}

static char *read_text(const char *path, size_t max, struct err_detail *e) {
        FILE *f = fopen(path, "re");
        if (!f) {
                err_set(e, -errno, "io", "%s: %s", path, strerror(errno));
                return NULL;
        }
        char *buf = malloc(max + 1);
        size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
        fclose(f);
        if (!buf || n > max) {
                free(buf);
                err_set(e, -E2BIG, "too_large", "%s is larger than %zu bytes", path, max);
                return NULL;
        }
        buf[n] = '\0';
        return buf;
}

/* Imports one skill directory; prints what happened. */
static int import_one(struct api *a, struct db *d, const char *tenant_id, const char *dir, struct err_detail *e) {
        char md[4200];
        snprintf(md, sizeof md, "%s/SKILL.md", dir);
        _cleanup_free_ char *text = read_text(md, SKILL_BYTES_MAX, e);
        if (!text)
                return e->errnum ? e->errnum : -EIO;
        _cleanup_free_ char *name = NULL, *desc = NULL;
        const char *instructions = NULL;
        int k = parse_skill_md(text, &name, &desc, &instructions, e);
        if (k < 0)
                return k;
        _cleanup_json_ json_t *files = json_object();
        size_t total = strlen(instructions);
        if ((k = collect_files(dir, "", 0, files, &total, e)) < 0)
                return k;
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s, s:O}", "description", desc ? desc : "", "instructions",
                                                instructions, "files", files);
        if (!body)
                return err_set(e, -EINVAL, "invalid_field", "%s: not valid UTF-8", md);
        if ((k = catalog_validate_body(NULL, "skills", body, e)) < 0)
                return k;
        _cleanup_free_ char *bodys = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
        char id[UUID_STR_LEN];
        if (!bodys || id_new_uuid(id) < 0)
                return -ENOMEM;
        /* idempotent by name: unchanged stays (and stays approved), a change
         * is stored as a draft that needs approval again */
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {id, tenant_id, name, bodys};
        if ((k = db_begin(d, e)) < 0)
                return k;
        k = pg_exec(d->conn,
                    "INSERT INTO api.catalog_items AS c (id, tenant_id, kind, name, body, created_by) "
                    "VALUES ($1, $2, 'skills', $3, $4::jsonb, 'import') "
                    "ON CONFLICT (tenant_id, kind, name) DO UPDATE SET body = EXCLUDED.body, state = 'draft', "
                    "approved_by = NULL, approved_at = NULL, updated_at = now() WHERE c.body <> EXCLUDED.body "
                    "RETURNING (xmax = 0), id::text",
                    4, params, &res, e);
        bool changed = k >= 0 && PQntuples(res) == 1;
        const char *action = changed && PQgetvalue(res, 0, 0)[0] == 't' ? "catalog.create" : "catalog.update";
        /* audited like a write through the api, before it commits */
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s, s:s}", "kind", "skills", "name", name, "body", bodys);
        if (k >= 0 && changed)
                k = api_audit_operator(a, d, tenant_id, action, "catalog_item", PQgetvalue(res, 0, 1), change, e);
        if (k < 0 || (k = db_commit(d, e)) < 0) {
                db_rollback(d);
                return k;
        }
        if (!changed)
                printf("unchanged %s\n", name);
        else
                printf("%s %s %s\n", PQgetvalue(res, 0, 0)[0] == 't' ? "created" : "updated", name,
                       PQgetvalue(res, 0, 1));
        return 0;
}

int catalog_import_skills_main(struct api *a, int argc, char **argv) {
        const char *tenant = NULL;
        static const struct option opts[] = {{"tenant", required_argument, NULL, 't'}, {NULL, 0, NULL, 0}};
        int c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                if (c == 't')
                        tenant = optarg;
                else
                        return 64;
        }
        if (!tenant || optind != argc - 1) {
                fprintf(stderr, "usage: paddock-api import-skills --tenant NAME DIR\n"
                                "  imports DIR/*/SKILL.md as draft skills of the tenant (by name: changed ones are updated)\n");
                return 64;
        }
        const char *root = argv[optind];
        if (api_migrate(a, 30) < 0)
                return 1;
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        if (db_open(&d, a, NULL, &e) < 0) {
                log_error("could not connect to postgresql: %s", e.message);
                return 1;
        }
        char tenant_id[UUID_STR_LEN];
        int k = auth_tenant_id_by_name(&d, tenant, tenant_id, &e);
        if (k == -ENOENT) {
                fprintf(stderr, "paddock-api: no tenant named \"%s\"\n", tenant);
                return 1;
        }
        if (k < 0 || (k = db_set_tenant(&d, tenant_id, &e)) < 0) {
                log_error("could not look up tenant: %s", e.message);
                return 1;
        }
        struct dirent **ents = NULL;
        int n = scandir(root, &ents, NULL, alphasort);
        if (n < 0) {
                fprintf(stderr, "paddock-api: %s: %s\n", root, strerror(errno));
                return 1;
        }
        int rc = 0, found = 0;
        for (int i = 0; i < n; i++) {
                char dir[4096], md[4200];
                snprintf(dir, sizeof dir, "%s/%s", root, ents[i]->d_name);
                snprintf(md, sizeof md, "%s/SKILL.md", dir);
                struct stat st;
                if (ents[i]->d_name[0] != '.' && stat(md, &st) == 0 && S_ISREG(st.st_mode)) {
                        found++;
                        struct err_detail ie = {0};
                        if (import_one(a, &d, tenant_id, dir, &ie) < 0) {
                                fprintf(stderr, "paddock-api: %s: %s\n", dir, ie.message[0] ? ie.message : "failed");
                                rc = 1;
                        }
                }
                free(ents[i]);
        }
        free(ents);
        if (!found) {
                fprintf(stderr, "paddock-api: no */SKILL.md under %s\n", root);
                rc = 1;
        }
        return rc;
}
