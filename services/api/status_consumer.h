/* The consumer of run status events (status_consumer.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- status_consumer.c */
int status_consumer_start(struct api *a);
void status_consumer_register_metrics(void);
/* Registers the consumer's processed/skipped/retries counters; call once from main(). */
void status_consumer_stop(void);
