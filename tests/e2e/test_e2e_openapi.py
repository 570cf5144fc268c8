"""services/api/openapi.yaml itself: OpenAPI 3.1.x, every $ref resolves, every
schema is a valid Draft 2020-12 schema, and its paths and methods are exactly the
route table of services/api/routes.c. (Real responses of the whole e2e suite are
validated against it by conftest.py through openapi_check.py.)"""

import openapi_check


def test_document_well_formed():
    problems = openapi_check.Spec().document_problems()
    assert not problems, "openapi.yaml:\n  " + "\n  ".join(problems)


def test_route_table_parsed():
    """The check above compares against something real: the C table parses."""
    routes = openapi_check.routes_from_c()
    assert ("POST", "/v1/auth/login") in routes and ("GET", "/v1/runs/{id}") in routes, routes
    assert len(routes) >= 40, routes


def test_checker_rejects_what_the_spec_does_not_say():
    """The validator can fail: a wrong body, status, content type or path is reported."""
    spec = openapi_check.Spec()
    good = b'{"type":"about:blank","title":"Not Found","status":404,"detail":"run not found","code":"not_found"}'
    assert spec.check("GET", "/v1/runs/x", 404, "application/problem+json", good) == []
    assert spec.check("GET", "/v1/runs/x", 404, "application/problem+json",
                      good.replace(b'"status":404', b'"status":"404"'))
    assert spec.check("GET", "/v1/runs/x", 404, "text/html", b"<html>")
    assert spec.check("GET", "/v1/runs/x", 418, "application/problem+json", good)
    assert spec.check("GET", "/v1/no-such-thing", 404, "application/problem+json", good)
    assert spec.check("GET", "/v1/no-such-thing", 404, "application/problem+json", good,
                      allow_undescribed_path=True) == []
    assert spec.check("GET", "/v1/runs/x", 200, "application/json", b'{"id": 5}')
