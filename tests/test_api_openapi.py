"""The OpenAPI schema checked into docs/ is the one the API serves (regenerate: ``make openapi``)."""

import json

from api_server import ROOT

from medsyn_api.openapi import schema_text


def test_checked_in_openapi_schema_is_current():
    checked_in = (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert checked_in == schema_text(), "docs/openapi.json is stale: run `make openapi` and commit it"


def test_every_route_but_health_and_login_requires_a_token():
    schema = json.loads(schema_text())
    open_routes = {"/health", "/ready", "/api/v1/auth/token"}
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            secured = any("HTTPBearer" in s for s in op.get("security", []))
            assert secured == (path not in open_routes), (method, path)
