/* Secrets sealed to a run's key (sealing.c, status consumer thread). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- sealing.c: secrets sealed to a run's key (status consumer thread) */
/* Handles a provisioning status event carrying public_key (base64): seals the
 * run's secrets and produces RunControl{secrets}, or RunControl{cancel} if one
 * is not set. >= 0 when done (or nothing to do); negative errno when transient. */
int sealing_on_provisioning(struct api *a, const char *tenant_id, const char *run_id, const char *public_key_b64,
                            struct err_detail *err);
