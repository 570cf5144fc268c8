/* Service accounts and their API tokens (service_accounts.c, tenant_admin). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- service_accounts.c: non-login principals (users rows of kind
 * 'service') and their API tokens (tenant_admin) */
int service_accounts_list(struct api_req *r);
int service_accounts_create(struct api_req *r);
int service_accounts_delete(struct api_req *r);
int service_accounts_token_create(struct api_req *r);
int service_accounts_token_revoke(struct api_req *r);
