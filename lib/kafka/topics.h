/* Topic names of ARCHITECTURE.md §2. deploy/topics.txt lists the same names
 * with partition counts; tests/unit checks the two agree. */
#pragma once

#define TOPIC_RUNS_REQUESTED "paddock.runs.requested"
#define TOPIC_RUNS_ASSIGNED  "paddock.runs.assigned"
#define TOPIC_RUNS_CONTROL   "paddock.runs.control"
#define TOPIC_RUNS_EVENTS    "paddock.runs.events"
/* control-relevant copies of run events (status, approvals), low volume */
#define TOPIC_RUNS_STATUS    "paddock.runs.status"
#define TOPIC_ARTIFACTS      "paddock.artifacts"
#define TOPIC_USAGE          "paddock.usage"
#define TOPIC_NODES          "paddock.nodes"
#define TOPIC_AUDIT          "paddock.audit"
#define TOPIC_SIEM_OCSF      "paddock.siem.ocsf"
/* approval notices for integrations (chat, ticketing); no Paddock service reads it */
#define TOPIC_APPROVALS      "paddock.approvals"
/* budget notices at 80 % and 100 % (issue 14 §4); no Paddock service reads it */
#define TOPIC_USAGE_ALERTS   "paddock.usage.alerts"
