"""The OpenAPI document of /api/v1 (bot/api/openapi.py): it matches the routes, it is served to
anyone, and it gives nothing away. Plus the regressions the schemathesis run found
(tests/api/test_fuzz.py), each as a plain request."""

from __future__ import annotations

import json
import re

from starlette.routing import Route

from bot.api import openapi
from bot.app import create_app
from tests.conftest import TEST_ENV

AUTH = {"Authorization": "Bearer " + TEST_ENV["WEIQIAN_API_TOKEN"]}
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def api_routes(settings) -> dict[str, set[str]]:
    """path → methods of every /api/v1 route the app serves ({id:path} written as {id})."""
    out: dict[str, set[str]] = {}
    for r in create_app(settings, init_store=False).routes:
        if isinstance(r, Route) and r.path.startswith("/api/v1"):
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", r.path)
            out.setdefault(path, set()).update(m.lower() for m in (r.methods or ()) if m != "HEAD")
    return out


def test_every_route_is_documented_and_every_documented_path_is_a_route(settings):
    routes = api_routes(settings)
    documented = {p: {m for m in ops if m in HTTP_METHODS} for p, ops in openapi.document()["paths"].items()}
    assert set(routes) - set(documented) == set(), "routes missing from bot/api/openapi.py"
    assert set(documented) - set(routes) == set(), "documented paths that are no route"
    assert routes == documented, "methods differ between the routes and the document"


def test_the_document_is_public_and_holds_no_secret(client, settings):
    r = client.get(openapi.PATH)  # no Authorization header
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc == json.loads(json.dumps(openapi.document()))
    assert doc["openapi"].startswith("3.1") and "task.action" in doc["webhooks"]
    text = r.text
    for value in (*settings.secret_values, settings.wecom_corp_id, settings.public_url):
        assert value not in text


def test_every_operation_but_the_document_needs_the_bearer(client):
    doc = openapi.document()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            public = op.get("security") == []
            assert public == (path == openapi.PATH), f"{method} {path}"
            if not public:
                assert "401" in op["responses"], f"{method} {path} does not document 401"
                url = path.replace("{id}", "x")
                assert client.request(method, url).status_code == 401


def test_webhook_signature_is_documented_as_the_timestamped_scheme():
    hook = openapi.document()["webhooks"]["task.action"]["post"]
    headers = {p["name"]: p for p in hook["parameters"] if p["in"] == "header"}
    assert set(headers) == {"X-Wqbot-Event", "X-Wqbot-Delivery", "X-Wqbot-Signature"}
    pattern = headers["X-Wqbot-Signature"]["schema"]["pattern"]
    assert re.fullmatch(pattern, "t=1767225600,v1=" + "a" * 64 + ",v0=" + "b" * 64)
    assert not re.fullmatch(pattern, "sha256=" + "a" * 64)


# -- what the fuzzing found ------------------------------------------------------------------------
def test_after_past_the_64_bit_seq_is_a_400_not_a_500(client, store):
    # found by schemathesis: after=9223372036854775808 answered 500 (SQLite cannot bind it)
    r = client.get("/api/v1/org/changes", params={"after": str(2**63)}, headers=AUTH)
    assert r.status_code == 400 and r.json()["error"] == "invalid_parameter"
    r = client.get("/api/v1/org/changes", params={"after": str(2**63 - 1)}, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"changes": [], "next": 2**63 - 1}


def test_whole_number_parameters_take_plain_digits_only(client, store):
    # found by schemathesis: after= (empty) was read as 0 although the document says integer
    for bad in ("", " 5", "1_0", "٣", "+"):
        for name, path in (("after", "/api/v1/org/changes"), ("limit", "/api/v1/org/users")):
            r = client.get(path, params={name: bad}, headers=AUTH)
            assert r.status_code == 400 and r.json()["error"] == "invalid_parameter", (name, bad)
    assert client.get("/api/v1/org/changes", params={"after": "0", "limit": "1"}, headers=AUTH).status_code == 200


def test_an_id_posted_with_surrounding_spaces_reads_back_with_them(client, store, queue):
    # found by schemathesis (stateful): POST stored " n-1 " as "n-1", and GET " n-1 " answered 404
    body = {"id": " n-1 ", "type": "notice", "title": "t", "recipients": ["lisi"]}
    r = client.post("/api/v1/notifications", json=body, headers=AUTH)
    assert r.status_code == 202 and r.json()["id"] == "n-1"
    for asked in (" n-1 ", "n-1"):
        got = client.get(f"/api/v1/notifications/{asked}", headers=AUTH)
        assert got.status_code == 200 and got.json()["id"] == "n-1"
