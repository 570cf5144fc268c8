"""Every service answers /healthz, /readyz and /metrics the same way
(lib/http/ops.h) on their ops ports (PADDOCK_<SERVICE>_OPS_URL, the api's
too), all listed in endpoints.env.

The 503 answer of /readyz, with the dependency and the reason, is shown by
test_clone_anywhere.py on a stack of its own (it stops that stack's Kafka) and
by tests/unit/test_ops.c.
"""

import os

import pytest
import requests

from conftest import HTTP_TIMEOUT, assert_loopback_url

SERVICES = ("api", "scheduler", "runner-agent", "evidence", "billing")


def ops_url(service):
    key = "PADDOCK_" + service.upper().replace("-", "_") + "_OPS_URL"
    url = os.environ.get(key)
    if not url:
        pytest.fail(f"{key} is not in the environment: export the local stack's endpoints.env", pytrace=False)
    assert_loopback_url(url)
    return url.rstrip("/")


def test_api_ops_url_is_not_the_api():
    # the api serves /metrics (summed over its workers) on an ops port of its
    # own, never on the public one (test_e2e_api_ops.py)
    assert ops_url("api") != os.environ["PADDOCK_API_URL"].rstrip("/")


@pytest.mark.parametrize("service", SERVICES)
def test_health_format(service):
    base = ops_url(service)

    r = requests.get(base + "/healthz", timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    assert r.json() == {"status": "ok"}

    r = requests.get(base + "/readyz", timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    assert r.json() == {"status": "ready"}

    r = requests.get(base + "/metrics", timeout=HTTP_TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain"), r.headers
    assert "# TYPE " in r.text
