/* The settings several daemons share, in one place (STYLE.md: one common
 * table, embedded), so that their names, defaults, bounds and descriptions
 * cannot drift apart again (they had: five copies of PADDOCK_LOG_LEVEL with
 * three descriptions and two error messages, and the runner-agent parsed
 * PADDOCK_OPS_ADDR with a copy of its own that did not take [v6]:port).
 * A daemon embeds `struct service_settings svc;` in its settings and splices
 * the entries it has into its table:
 *   SERVICE_CONFIG_ENTRIES(struct settings, svc)      log level, ops address, database
 * or, for a daemon without one of them, the single entries: the api serves
 * its ops endpoints on its own port (no PADDOCK_OPS_ADDR), the runner-agent
 * holds no database credentials (no PADDOCK_PG_DSN).
 * service_init() validates the log level and the ops address (service.h);
 * tests/unit/test_service_config.c checks every daemon's --help against
 * these entries. */
#pragma once
#include <stddef.h>

#include "core/config.h"

struct service_settings {
        char *log_level; /* PADDOCK_LOG_LEVEL */
        char *ops_addr;  /* PADDOCK_OPS_ADDR; NULL in the api */
        char *pg_dsn;    /* PADDOCK_PG_DSN (sensitive); NULL in the runner-agent */
        char *business_clock_file; /* PADDOCK_BUSINESS_CLOCK_FILE; only in api, billing, evidence */
        long long stream_ping_s;   /* PADDOCK_STREAM_PING_S; only in the api (its websocket streams) */
};

#define SERVICE_CONFIG_OFF_(st, m, f) (offsetof(st, m) + offsetof(struct service_settings, f))

#define SERVICE_CONFIG_LOG_LEVEL_ENTRY(st, m)                                                                          \
        {"PADDOCK_LOG_LEVEL", CONFIG_STRING, "info", 0, 0, false, SERVICE_CONFIG_OFF_(st, m, log_level),            \
         "minimum log level: debug, info, warn or error"}
#define SERVICE_CONFIG_OPS_ADDR_ENTRY(st, m)                                                                           \
        {"PADDOCK_OPS_ADDR", CONFIG_STRING, "127.0.0.1:0", 0, 0, false, SERVICE_CONFIG_OFF_(st, m, ops_addr),       \
         "host:port or [v6]:port of /healthz, /readyz and /metrics (port 0 picks a free port, logged at start)"}
#define SERVICE_CONFIG_PG_DSN_ENTRY(st, m)                                                                             \
        {"PADDOCK_PG_DSN", CONFIG_STRING, NULL, 0, 0, true, SERVICE_CONFIG_OFF_(st, m, pg_dsn),                     \
         "PostgreSQL connection string (libpq) of this service's own role; `migrate` takes the schema owner's"}

/* Only where retention or budget months are decided (api, billing,
 * evidence): core/business_clock.h. */
#define SERVICE_CONFIG_BUSINESS_CLOCK_ENTRY(st, m)                                                                     \
        {"PADDOCK_BUSINESS_CLOCK_FILE", CONFIG_STRING, "", 0, 0, false,                                           \
         SERVICE_CONFIG_OFF_(st, m, business_clock_file),                                                            \
         "tests only: a file holding seconds to add to the clock that decides retention expiry and budget months (empty: the wall clock)"}

/* Only where websocket streams are served (the api): idle streams are pinged
 * so that load balancers, which close connections idle for their timeout
 * (often 60 s), keep them; a client that answers no ping within the same
 * interval is dropped (docs/CONTRACTS.md "Websocket pings"). */
#define SERVICE_CONFIG_STREAM_PING_ENTRY(st, m)                                                                        \
        {"PADDOCK_STREAM_PING_S", CONFIG_INT, "30", 1, 3600, false, SERVICE_CONFIG_OFF_(st, m, stream_ping_s),      \
         "seconds a websocket stream may be idle before the server pings it; a client that has not answered "     \
         "within twice this is dropped"}

/* All three, for the daemons that have all (billing, evidence, scheduler). */
#define SERVICE_CONFIG_ENTRIES(st, m)                                                                                  \
        SERVICE_CONFIG_LOG_LEVEL_ENTRY(st, m), SERVICE_CONFIG_OPS_ADDR_ENTRY(st, m), SERVICE_CONFIG_PG_DSN_ENTRY(st, m)
