/* Prompt templates and the task given at launch (docs/CONTRACTS.md "Prompt
 * templates"): a prompt-templates catalog item is {description?, body,
 * variables}; body holds {{name}} placeholders, each declared in variables
 * with a type (string, integer, boolean, enum, text). A definition fixes some
 * values (spec.prompt.vars, never overridden by a run); POST /v1/runs fills
 * the rest (prompt_vars, and free text `prompt` when the template declares
 * exactly one `text` variable). The api renders once, at launch, in a single
 * pass over the template: a value is copied as is and never scanned for
 * placeholders, so a value holding "{{x}}" cannot pull in another variable. */
#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "core/ids.h"

#define PROMPT_BODY_MAX (64 * 1024)
#define PROMPT_VARS_MAX 64
#define PROMPT_VAR_NAME_MAX 64
#define PROMPT_STRING_MAX 4096 /* a string variable's max_length when it names none */
#define PROMPT_MAX_LENGTH_MAX (1024 * 1024)
#define PROMPT_ENUM_MAX 64
#define PROMPT_ENUM_VALUE_MAX 256
#define PROMPT_DESCRIPTION_MAX 4096

static const char *const var_types[] = {"string", "integer", "boolean", "enum", "text", NULL};

static bool clean_string(json_t *v) {
        return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

static bool var_name_ok(const char *s, size_t n) {
        return n >= 1 && n <= PROMPT_VAR_NAME_MAX && !(s[0] >= '0' && s[0] <= '9') &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") >= n;
}

/* Code points of a valid UTF-8 string (jansson only holds valid UTF-8). */
static size_t utf8_chars(const char *s, size_t n) {
        size_t c = 0;
        for (size_t i = 0; i < n; i++)
                if (((unsigned char)s[i] & 0xC0) != 0x80)
                        c++;
        return c;
}

/* One line: no control character but tab (a `string` is a name, a path, an
 * id; several lines of instructions are what `text` is for). */
static bool one_line(const char *s) {
        for (; *s; s++)
                if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
                        return false;
        return true;
}

/* Walks the "{{name}}" placeholders of tpl: calls fn for each text chunk
 * (var NULL) and each placeholder. -EINVAL on an unterminated or bad one. */
typedef int (*tpl_fn)(void *userdata, const char *text, size_t len, const char *var);

static int template_walk(const char *tpl, tpl_fn fn, void *userdata, struct err_detail *e) {
        const char *s = tpl;
        for (;;) {
                const char *open = strstr(s, "{{");
                if (!open)
                        return fn(userdata, s, strlen(s), NULL);
                int k = fn(userdata, s, (size_t)(open - s), NULL);
                if (k < 0)
                        return k;
                const char *close = strstr(open + 2, "}}");
                if (!close)
                        return err_set(e, -EINVAL, "invalid_field", "body.body: \"{{\" without \"}}\"");
                const char *a = open + 2, *b = close;
                while (a < b && *a == ' ')
                        a++;
                while (b > a && b[-1] == ' ')
                        b--;
                char name[PROMPT_VAR_NAME_MAX + 1];
                if (!var_name_ok(a, (size_t)(b - a)))
                        return err_set(e, -EINVAL, "invalid_field",
                                       "body.body: a placeholder must be {{name}} with name [A-Za-z_][A-Za-z0-9_]*");
                memcpy(name, a, (size_t)(b - a));
                name[b - a] = '\0';
                if ((k = fn(userdata, NULL, 0, name)) < 0)
                        return k;
                s = close + 2;
        }
}

/* Checks value v of variable name (declaration d) and returns it normalised
 * in *ret (new reference): integers and booleans may come as their decimal or
 * "true"/"false" string (the CLI's --var cannot type them). field is the
 * prefix naming the value ("prompt_vars", "spec.prompt.vars", "body.variables.N.default"). */
static int check_value(json_t *d, const char *field, const char *name, json_t *v, json_t **ret,
                       struct err_detail *e) {
        const char *type = json_string_value(json_object_get(d, "type"));
        json_t *ml = json_object_get(d, "max_length");
        if (!strcmp(type, "integer")) {
                if (json_is_integer(v)) {
                        *ret = json_incref(v);
                        return 0;
                }
                const char *s = json_string_value(v);
                char *end;
                errno = 0;
                long long n = s && *s && strlen(s) <= 20 ? strtoll(s, &end, 10) : 0;
                if (!s || !*s || errno || *end || strspn(s, "-0123456789") != strlen(s))
                        return err_set(e, -EINVAL, "invalid_field", "%s.%s must be an integer", field, name);
                *ret = json_integer(n);
                return *ret ? 0 : -ENOMEM;
        }
        if (!strcmp(type, "boolean")) {
                const char *s = json_string_value(v);
                if (json_is_boolean(v))
                        *ret = json_incref(v);
                else if (s && (!strcmp(s, "true") || !strcmp(s, "false")))
                        *ret = json_boolean(!strcmp(s, "true"));
                else
                        return err_set(e, -EINVAL, "invalid_field", "%s.%s must be a boolean (true or false)", field,
                                       name);
                return 0;
        }
        if (!clean_string(v))
                return err_set(e, -EINVAL, "invalid_field", "%s.%s must be a string", field, name);
        const char *s = json_string_value(v);
        if (!strcmp(type, "enum")) {
                size_t i;
                json_t *x;
                json_array_foreach(json_object_get(d, "values"), i, x) {
                        if (!strcmp(json_string_value(x), s)) {
                                *ret = json_incref(v);
                                return 0;
                        }
                }
                _cleanup_free_ char *vals = json_dumps(json_object_get(d, "values"), JSON_COMPACT);
                return err_set(e, -EINVAL, "invalid_field", "%s.%s must be one of %s", field, name,
                               vals ? vals : "its values");
        }
        if (!strcmp(type, "string") && !one_line(s))
                return err_set(e, -EINVAL, "invalid_field",
                               "%s.%s must be one line (a string variable; multi-line input needs a text variable)",
                               field, name);
        size_t max = ml ? (size_t)json_integer_value(ml) : !strcmp(type, "string") ? PROMPT_STRING_MAX : 0;
        size_t n = utf8_chars(s, json_string_length(v));
        if (max && n > max)
                return err_set(e, -EINVAL, "invalid_field", "%s.%s is %zu characters, longer than its max_length %zu",
                               field, name, n, max);
        *ret = json_incref(v);
        return 0;
}

static int opt_description(json_t *o, const char *field, struct err_detail *e) {
        json_t *v = json_object_get(o, "description");
        if (v && (!clean_string(v) || json_string_length(v) > PROMPT_DESCRIPTION_MAX))
                return err_set(e, -EINVAL, "invalid_field", "%s.description must be a string of at most %d bytes",
                               field, PROMPT_DESCRIPTION_MAX);
        return 0;
}

static int validate_variable(const char *name, json_t *d, struct err_detail *e) {
        char field[PROMPT_VAR_NAME_MAX + 32];
        snprintf(field, sizeof field, "body.variables.%s", name);
        if (!json_is_object(d))
                return err_set(e, -EINVAL, "invalid_field", "%s must be an object {type, required, ...}", field);
        const char *key;
        json_t *v;
        json_object_foreach(d, key, v) {
                if (strcmp(key, "type") && strcmp(key, "required") && strcmp(key, "max_length") &&
                    strcmp(key, "values") && strcmp(key, "default") && strcmp(key, "description"))
                        return err_set(e, -EINVAL, "unknown_field", "%s.%s is not a known field", field, key);
        }
        json_t *type = json_object_get(d, "type"), *req = json_object_get(d, "required"),
               *ml = json_object_get(d, "max_length"), *values = json_object_get(d, "values"),
               *def = json_object_get(d, "default");
        const char *t = json_string_value(type);
        const char *const *vt = var_types;
        for (; t && *vt; vt++)
                if (!strcmp(*vt, t))
                        break;
        if (!t || !*vt)
                return err_set(e, -EINVAL, "invalid_field",
                               "%s.type must be \"string\", \"integer\", \"boolean\", \"enum\" or \"text\"", field);
        if (req && !json_is_boolean(req))
                return err_set(e, -EINVAL, "invalid_field", "%s.required must be a boolean", field);
        if (ml && strcmp(t, "string") && strcmp(t, "text"))
                return err_set(e, -EINVAL, "invalid_field", "%s.max_length is for string and text variables", field);
        if (ml && (!json_is_integer(ml) || json_integer_value(ml) < 1 ||
                   json_integer_value(ml) > PROMPT_MAX_LENGTH_MAX))
                return err_set(e, -EINVAL, "invalid_field", "%s.max_length must be an integer from 1 to %d", field,
                               PROMPT_MAX_LENGTH_MAX);
        if (values && strcmp(t, "enum"))
                return err_set(e, -EINVAL, "invalid_field", "%s.values is for enum variables", field);
        if (!strcmp(t, "enum")) {
                if (!json_is_array(values) || json_array_size(values) == 0 ||
                    json_array_size(values) > PROMPT_ENUM_MAX)
                        return err_set(e, -EINVAL, "invalid_field",
                                       "%s.values must be an array of 1 to %d strings (an enum needs its values)",
                                       field, PROMPT_ENUM_MAX);
                size_t i, j;
                json_t *x, *y;
                json_array_foreach(values, i, x) {
                        if (!clean_string(x) || json_string_length(x) == 0 ||
                            json_string_length(x) > PROMPT_ENUM_VALUE_MAX || !one_line(json_string_value(x)))
                                return err_set(e, -EINVAL, "invalid_field",
                                               "%s.values[%zu] must be a one-line string of 1 to %d bytes", field, i,
                                               PROMPT_ENUM_VALUE_MAX);
                        json_array_foreach(values, j, y) {
                                if (j < i && json_equal(x, y))
                                        return err_set(e, -EINVAL, "invalid_field", "%s.values[%zu] repeats %s",
                                                       field, i, json_string_value(x));
                        }
                }
        }
        int k = opt_description(d, field, e);
        if (k < 0)
                return k;
        if (def) {
                /* a default is stored typed: "3" for an integer is refused here */
                _cleanup_json_ json_t *norm = NULL;
                if ((!strcmp(t, "integer") && !json_is_integer(def)) || (!strcmp(t, "boolean") && !json_is_boolean(def)))
                        return err_set(e, -EINVAL, "invalid_field", "%s.default must be of type %s", field, t);
                if ((k = check_value(d, field, "default", def, &norm, e)) < 0)
                        return k;
        }
        return 0;
}

struct tpl_check {
        json_t *vars;
        struct err_detail *e;
};

static int tpl_check_var(void *userdata, const char *text, size_t len, const char *var) {
        struct tpl_check *c = userdata;
        (void)text;
        (void)len;
        if (var && !json_object_get(c->vars, var))
                return err_set(c->e, -EINVAL, "invalid_field",
                               "body.body: placeholder {{%s}} is not declared in body.variables", var);
        return 0;
}

int prompt_template_validate(json_t *b, struct err_detail *e) {
        const char *key;
        json_t *v;
        json_object_foreach(b, key, v) {
                if (strcmp(key, "description") && strcmp(key, "body") && strcmp(key, "variables"))
                        return err_set(e, -EINVAL, "unknown_field", "body.%s is not a known field", key);
        }
        int k = opt_description(b, "body", e);
        if (k < 0)
                return k;
        json_t *tpl = json_object_get(b, "body"), *vars = json_object_get(b, "variables");
        if (!tpl)
                return err_set(e, -EINVAL, "missing_field", "body.body is required (the template text)");
        if (!clean_string(tpl) || json_string_length(tpl) == 0 || json_string_length(tpl) > PROMPT_BODY_MAX)
                return err_set(e, -EINVAL, "invalid_field", "body.body must be a string of 1 to %d bytes",
                               PROMPT_BODY_MAX);
        if (vars && (!json_is_object(vars) || json_object_size(vars) > PROMPT_VARS_MAX))
                return err_set(e, -EINVAL, "invalid_field", "body.variables must be an object of at most %d variables",
                               PROMPT_VARS_MAX);
        json_object_foreach(vars, key, v) {
                if (!var_name_ok(key, strlen(key)))
                        return err_set(e, -EINVAL, "invalid_field",
                                       "body.variables: \"%.64s\" is not a variable name ([A-Za-z_][A-Za-z0-9_]*)", key);
                if ((k = validate_variable(key, v, e)) < 0)
                        return k;
        }
        /* every placeholder declared; a declared variable the body does not
         * use is allowed (a template may keep one for later) */
        struct tpl_check c = {.vars = vars, .e = e};
        return template_walk(json_string_value(tpl), tpl_check_var, &c, e);
}

int prompt_check_fixed(json_t *tpl_body, json_t *vars, struct err_detail *e) {
        json_t *decl = json_object_get(tpl_body, "variables");
        if (vars && !json_is_object(vars))
                return err_set(e, -EINVAL, "invalid_field", "spec.prompt.vars must be an object");
        const char *name;
        json_t *v;
        json_object_foreach(vars, name, v) {
                json_t *d = json_object_get(decl, name);
                if (!d)
                        return err_set(e, -EINVAL, "unknown_field",
                                       "spec.prompt.vars.%.64s is not a variable of the template", name);
                _cleanup_json_ json_t *norm = NULL;
                int k = check_value(d, "spec.prompt.vars", name, v, &norm, e);
                if (k < 0)
                        return k;
        }
        return 0;
}

struct tpl_render {
        json_t *values;
        bool keep_open; /* an unfilled placeholder stays "{{name}}" (a preview) */
        FILE *f;
};

static int tpl_render_chunk(void *userdata, const char *text, size_t len, const char *var) {
        struct tpl_render *t = userdata;
        if (!var) {
                fwrite(text, 1, len, t->f);
                return 0;
        }
        json_t *v = json_object_get(t->values, var);
        if (json_is_string(v))
                fwrite(json_string_value(v), 1, json_string_length(v), t->f);
        else if (json_is_integer(v))
                fprintf(t->f, "%lld", (long long)json_integer_value(v));
        else if (json_is_boolean(v))
                fputs(json_is_true(v) ? "true" : "false", t->f);
        else if (t->keep_open)
                fprintf(t->f, "{{%s}}", var);
        return 0;
}

/* Renders tpl_body's text with values (typed, checked) in one pass. */
static int render(json_t *tpl_body, json_t *values, bool keep_open, char **ret, size_t *ret_len,
                  struct err_detail *e) {
        char *buf = NULL;
        size_t len = 0;
        struct tpl_render t = {.values = values, .keep_open = keep_open};
        t.f = open_memstream(&buf, &len);
        if (!t.f)
                return -ENOMEM;
        int k = template_walk(json_string_value(json_object_get(tpl_body, "body")), tpl_render_chunk, &t, e);
        fclose(t.f);
        if (k < 0) {
                free(buf);
                return k;
        }
        *ret = buf;
        if (ret_len)
                *ret_len = len;
        return 0;
}

int prompt_preview(json_t *tpl_body, json_t *fixed, char **ret, json_t **ret_open, struct err_detail *e) {
        _cleanup_json_ json_t *values = json_object(), *open = json_object();
        if (!values || !open)
                return -ENOMEM;
        const char *name;
        json_t *d;
        json_object_foreach(json_object_get(tpl_body, "variables"), name, d) {
                json_t *v = json_object_get(fixed, name), *def = json_object_get(d, "default");
                if (v) {
                        _cleanup_json_ json_t *norm = NULL;
                        int k = check_value(d, "spec.prompt.vars", name, v, &norm, e);
                        if (k < 0)
                                return k;
                        json_object_set(values, name, norm);
                        continue;
                }
                if (def)
                        json_object_set(values, name, def);
                json_object_set(open, name, d);
        }
        int k = render(tpl_body, values, true, ret, NULL, e);
        if (k >= 0)
                *ret_open = TAKE_PTR(open);
        return k;
}

int prompt_for_run(struct db *d, const char *tenant_id, json_t *spec, const struct prompt_input *in, json_t **ret,
                   struct err_detail *e) {
        json_t *jp = json_object_get(spec, "prompt");
        *ret = NULL;
        if (!jp) {
                if (in->free_text || json_object_size(in->vars) > 0)
                        return err_set(e, -EINVAL, "invalid_field",
                                       "%s: this sandbox version has no prompt template (spec.prompt)",
                                       in->free_text ? "prompt" : "prompt_vars");
                return 0;
        }
        _cleanup_json_ json_t *item = NULL;
        const char *ref = json_string_value(json_object_get(jp, "template"));
        int k = ref ? catalog_lookup(d, tenant_id, "prompt-templates", ref, &item, e) : -ENOENT;
        if (k == -ENOENT || (k >= 0 && strcmp(json_string_value(json_object_get(item, "state")), "approved")))
                /* published against an approved item that is gone or back in draft */
                return err_set(e, -EEXIST, "conflict", "spec.prompt.template: catalog item %.128s is not approved",
                               ref ? ref : "");
        if (k < 0)
                return k;
        json_t *body = json_object_get(item, "body"), *decl = json_object_get(body, "variables"),
               *fixed = json_object_get(jp, "vars");
        const char *tname = json_string_value(json_object_get(item, "name"));

        _cleanup_json_ json_t *given = json_object(), *values = json_object();
        if (!given || !values)
                return -ENOMEM;
        const char *name;
        json_t *v;
        json_object_foreach(in->vars, name, v) {
                json_t *dv = json_object_get(decl, name);
                if (!dv)
                        return err_set(e, -EINVAL, "unknown_field",
                                       "prompt_vars.%.64s is not a variable of template \"%s\"", name, tname);
                if (json_object_get(fixed, name))
                        return err_set(e, -EINVAL, "invalid_field",
                                       "prompt_vars.%s is fixed by the sandbox definition (spec.prompt.vars)", name);
                _cleanup_json_ json_t *norm = NULL;
                if ((k = check_value(dv, "prompt_vars", name, v, &norm, e)) < 0)
                        return k;
                json_object_set(given, name, norm);
        }
        if (in->free_text) {
                /* free text only where the template asks for it: its one text variable */
                const char *text_var = NULL;
                size_t n_text = 0;
                json_t *dv;
                json_object_foreach(decl, name, dv) {
                        if (!strcmp(json_string_value(json_object_get(dv, "type")), "text")) {
                                text_var = name;
                                n_text++;
                        }
                }
                if (n_text != 1)
                        return err_set(e, -EINVAL, "invalid_field",
                                       "prompt: free text needs a template with exactly one text variable; "
                                       "template \"%s\" declares %zu",
                                       tname, n_text);
                if (json_object_get(fixed, text_var) || json_object_get(given, text_var))
                        return err_set(e, -EINVAL, "invalid_field",
                                       "prompt: text variable %s is already given (%s)", text_var,
                                       json_object_get(fixed, text_var) ? "spec.prompt.vars" : "prompt_vars");
                _cleanup_json_ json_t *norm = NULL;
                if ((k = check_value(json_object_get(decl, text_var), "prompt", text_var, in->free_text, &norm, e)) <
                    0)
                        return k;
                json_object_set(given, text_var, norm);
        }
        json_t *dv;
        json_object_foreach(decl, name, dv) {
                json_t *f = json_object_get(fixed, name), *g = json_object_get(given, name),
                       *def = json_object_get(dv, "default");
                _cleanup_json_ json_t *norm = NULL;
                struct err_detail fe = {0};
                /* valid at publish: the template changed since (approved again) */
                if (f && check_value(dv, "spec.prompt.vars", name, f, &norm, &fe) < 0)
                        return err_set(e, -EEXIST, "conflict", "%s", fe.message);
                if (f)
                        json_object_set(values, name, norm);
                else if (g)
                        json_object_set(values, name, g);
                else if (def)
                        json_object_set(values, name, def);
                else if (json_is_true(json_object_get(dv, "required")))
                        return err_set(e, -EINVAL, "missing_field", "prompt_vars.%s is required by template \"%s\"",
                                       name, tname);
        }
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if ((k = render(body, values, false, &text, &len, e)) < 0)
                return k;
        if (len > in->max_bytes)
                return err_set(e, -EINVAL, "invalid_field",
                               "prompt_vars: the rendered prompt is %zu bytes, more than the %zu allowed "
                               "(PADDOCK_PROMPT_MAX_BYTES)",
                               len, in->max_bytes);
        unsigned char dg[SHA256_DIGEST_LENGTH];
        char sha[65], tver[65];
        SHA256((const unsigned char *)text, len, dg);
        hex_encode(dg, sizeof dg, sha);
        _cleanup_free_ char *canon = NULL;
        if ((k = spec_canonical(body, &canon, tver)) < 0)
                return k;
        *ret = json_pack("{s:O, s:s, s:s, s:O, s:s%, s:s}", "template", json_object_get(item, "id"), "template_name",
                         tname, "template_version", tver, "vars", given, "rendered", text, len, "rendered_sha256", sha);
        return *ret ? 0 : -ENOMEM;
}
