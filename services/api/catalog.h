/* The governance catalog (catalog_*.c): versioned entries, their validation, storage and approval. */
#pragma once
#include "request.h"
#include "db.h"

/* Bounds of an item (catalog_validate.c, and import-skills reading a folder) */
#define CATALOG_NAME_MAX 128
#define DESCRIPTION_MAX 4096
#define SKILL_FILES_MAX 64
#define SKILL_BYTES_MAX (256 * 1024)

/* ---- catalog_validate.c: the kinds and their bodies */
bool catalog_kind_valid(const char *kind);
bool catalog_name_ok(const char *s);
/* A connectors item's name: [a-z0-9_], no "__", no "_" at either end (the
 * MCP server name the CLIs put in mcp__<server>__<tool>, docs/CONTRACTS.md
 * "MCP connectors"). */
bool catalog_connector_name_ok(const char *s);
/* The origin of an http connector's url "http(s)://host[:port][/path]":
 * writes the lower-case host (IPv6 without brackets), the port (default 80
 * or 443) and whether it is https. Returns 1 for an IP literal, 0 for a
 * name, -EINVAL with e. */
int catalog_connector_origin(const char *url, char *host, size_t size, uint16_t *ret_port, bool *ret_tls,
                             struct err_detail *e);
/* Validates the kind-specific body of an item (-EINVAL, e names the field);
 * floor (borrowed, may be NULL) refuses egress-profile rules and models
 * upstreams inside it. */
int catalog_validate_body(struct addr_floor *floor, const char *kind, json_t *body, struct err_detail *e);
/* True for a JSON string without an embedded NUL (what C code can hold). */
bool catalog_clean_string(json_t *v);
/* ---- catalog.c: storage and approval */
/* Loads item ref (id or name) of kind: {id, name, state, body}; -ENOENT if none. */
int catalog_lookup(struct db *d, const char *tenant_id, const char *kind, const char *ref, json_t **ret,
                   struct err_detail *e);
int catalog_list(struct api_req *r);
int catalog_create(struct api_req *r);
int catalog_get(struct api_req *r);
int catalog_patch(struct api_req *r);
int catalog_approve(struct api_req *r);
/* ---- catalog_import.c */
int catalog_import_skills_main(struct api *a, int argc, char **argv);
