/* Prompt templates and the rendered prompt of a run (prompt.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- prompt.c: prompt templates and the prompt of a run (docs/CONTRACTS.md
 * "Prompt templates"). -EINVAL with e naming the field on bad input. */
/* Validates a prompt-templates catalog body {description?, body, variables}. */
int prompt_template_validate(json_t *body, struct err_detail *e);
/* Checks a definition's fixed values (spec.prompt.vars) against the template. */
int prompt_check_fixed(json_t *tpl_body, json_t *vars, struct err_detail *e);
/* Renders the template with the fixed values and defaults, leaving "{{name}}"
 * where a run fills the value; *ret (malloc'd) and *ret_open (the
 * declarations of the variables a run may fill) owned by the caller. */
int prompt_preview(json_t *tpl_body, json_t *fixed, char **ret, json_t **ret_open, struct err_detail *e);
/* What a launch gives: prompt_vars (an object, borrowed, may be NULL), free
 * text (a JSON string, borrowed, or NULL), and the rendered size limit. */
struct prompt_input {
        json_t *vars;
        json_t *free_text;
        size_t max_bytes;
};
/* The prompt of a run of spec: *ret = {template, template_name,
 * template_version (the approved body's content_sha256), vars (what the launch
 * gave), rendered, rendered_sha256}, or NULL when spec has no prompt (owned by
 * the caller). -EINVAL naming prompt_vars.<name> or prompt; -EEXIST when the
 * template is no longer approved or no longer fits the definition. */
int prompt_for_run(struct db *d, const char *tenant_id, json_t *spec, const struct prompt_input *in, json_t **ret,
                   struct err_detail *e);
