/* The run request's snapshot (run_snapshot.c): the SandboxSnapshot a launch
 * sends on paddock.runs.requested, built from a validated spec and its
 * resolved policy (policy_resolve), borrowing their strings. */
#pragma once
#include <jansson.h>

#include "paddock/v1/runs.pb-c.h"

/* Everything a RunRequested points into, freed together. */
struct snapshot_parts {
        char **command;
        Paddock__V1__ManagedFile *files;
        Paddock__V1__ManagedFile **file_ptrs;
        size_t n_command, n_files;
        Paddock__V1__EgressPolicy egress;
        Paddock__V1__EgressRule *rules;
        Paddock__V1__EgressRule **rule_ptrs;
        Paddock__V1__SecretRef *secrets;
        Paddock__V1__SecretRef **secret_ptrs;
        char (*header_hosts)[256];      /* spec_header_origin's host of each header secret */
        Paddock__V1__ModelRoute *routes;
        Paddock__V1__ModelRoute **route_ptrs;
        char **route_models;            /* one model id per route */
        char *policy_json;
        Paddock__V1__SecretRef *identity;   /* spec.identity (snapshot_fill_identity) */
        Paddock__V1__SecretRef **identity_ptrs;
        char (*identity_names)[32];         /* "identity:<index>" */
        char (*identity_hosts)[256];
        Paddock__V1__McpServer *mcp;
        Paddock__V1__McpServer **mcp_ptrs;
        char **mcp_args;                /* every stdio server's argv, one block */
};
void snapshot_parts_free(struct snapshot_parts *p);
/* Fills snap, agent and limits from spec and pol; what they point into is
 * allocated in parts (free with snapshot_parts_free). 0 or -errno. */
int snapshot_fill(json_t *spec, json_t *pol, Paddock__V1__SandboxSnapshot *snap, Paddock__V1__AgentSpec *agent,
                  Paddock__V1__Limits *limits, struct snapshot_parts *parts);
/* The team secrets pol names (models keys, http connectors' headers), each
 * once, as a PostgreSQL text[] literal for api.runs.model_key_secrets;
 * malloc'd, NULL when out of memory. */
char *model_key_secrets_literal(json_t *pol);
