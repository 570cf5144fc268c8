/* The resolved policy of a spec (policy.c): the run snapshot and effective-policy. */
#pragma once
#include "request.h"
#include "core/domain.h"
#include "db.h"

/* ---- policy.c: the resolved policy of a spec (run snapshot and effective-policy) */
/* a spec's limit defaults and ask timeout are the platform's (lib/core/domain.h RUN_DEFAULT_*) */
#define POLICY_ASK_TIMEOUT_MAX_S 86400
#define POLICY_RULES_MAX 256            /* spec.policy.rules, a policy pack's body.rules */
#define POLICY_EFFECTIVE_RULES_MAX 1024 /* the definition's and its packs' together (lib/policy's bound) */
/* Resolves a validated spec against the tenant's catalog: {image, image_id?,
 * egress {rules [{host, port, source}] in evaluation order, profiles, unknown,
 * ask_timeout_s}, limits (defaults applied), files [{path, content, mode,
 * source}] (spec files, then skills), skills, secrets [{name, as}], prompt
 * (rendered or null), prompt_template?, policy {rules [{match, action,
 * source}] (the definition's, then each pack's in order), packs [{id, name}],
 * ask_timeout_s}}. -EINVAL with e naming the spec field when an item is
 * missing or not approved or the prompt vars do not fit. */
int policy_resolve(struct db *d, const char *tenant_id, json_t *spec, json_t **ret, struct err_detail *e);
int policy_effective(struct api_req *r);
