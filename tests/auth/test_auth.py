"""API keys and scopes: every route refuses a request without the scope its path needs."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from auth import keys
from core.settings import load
from service.app import create_app
from service.auth import matched
from service.auth import required_scope as scope_of_route
from service.routes import ROUTES
from tests.support import jobs_cli, make_client

KEYS = "/api/v1/analytics/keys"
PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"}


def required_scope(method: str, path: str, metrics_need_key: bool = False) -> str | None:
    """The scope a request needs, as service/front.py decides it from the route table."""
    request = {"type": "http", "method": method, "path": path, "root_path": ""}
    return scope_of_route(ROUTES, matched(ROUTES, request), request, metrics_need_key)


def endpoints() -> list[tuple[str, str]]:
    """Every (method, path) the app serves, path parameters filled in."""
    app = create_app(load({"DATABASE_URL": "postgresql://unused/x"}))
    found = []
    for route in app.routes:
        assert isinstance(route, Route)
        path = re.sub(r"\{[^}]+\}", "1", route.path)
        found.extend((method, path) for method in sorted(route.methods or ()) if method != "HEAD")
    return found


ENDPOINTS = endpoints()


def call(client: TestClient, method: str, path: str) -> Any:
    return client.request(method, path, json={} if method in {"POST", "PUT", "PATCH"} else None)


def test_the_scope_table_covers_every_route() -> None:
    needs = {(m, p): required_scope(m, p) for m, p in ENDPOINTS}

    assert {p for (_, p), need in needs.items() if need is None} == PUBLIC
    assert needs[("POST", "/api/v1/analytics/metrics/batch")] == "ingest"
    assert needs[("POST", "/api/v1/analytics/events")] == "ingest"
    assert needs[("GET", "/api/v1/analytics/dashboard")] == "read"
    assert needs[("GET", "/api/v1/analytics/alerts/incidents")] == "admin"
    assert needs[("POST", "/api/v1/analytics/batch-track")] == "admin"
    assert needs[("DELETE", "/api/v1/analytics/keys/1")] == "admin"
    assert required_scope("POST", "/api/v1/analytics/some-future-route") == "admin"
    assert required_scope("GET", "/api/v1/analytics/some-future-route") == "read"


INGEST_POSTS = {"/api/v1/analytics/metrics/record", "/api/v1/analytics/metrics/batch"}
INGEST_POSTS |= {"/api/v1/analytics/events", "/write", "/api/v2/write", "/api/v1/write"}
INGEST_POSTS |= {"/v1/metrics", "/otlp/v1/metrics"}
ADMIN_ONLY = re.compile(r"^/api/v1/analytics/(alerts|monitoring/services|batch-track|keys)(/|$)")


def test_every_route_keeps_the_policy() -> None:
    """The policy the scopes follow, pinned apart from the routes that declare them: public
    paths need nothing; only the event POSTs (ours, line protocol's, remote write's, OTLP's) take
    `ingest`; any other write and anything under the admin prefixes needs `admin`; other reads
    need `read`."""
    for method, path in ENDPOINTS:
        if path in PUBLIC:
            expected = None
        elif method == "POST" and path in INGEST_POSTS:
            expected = "ingest"
        elif method not in {"GET", "HEAD"} or ADMIN_ONLY.match(path):
            expected = "admin"
        else:
            expected = "read"
        assert required_scope(method, path) == expected, (method, path)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/healthz", None),  # a public path with another method: a 405, no key
        ("OPTIONS", "/readyz", None),
        ("DELETE", "/docs", None),
        ("POST", "/metrics", None),
        ("GET", "/docs/x", "read"),  # not a public path
        ("GET", "/api/v1/analytics/alerts/nope", "admin"),
        ("GET", "/api/v1/analytics/alerts", "admin"),
        ("GET", "/api/v1/analytics/alerts/rules/", "admin"),
        ("GET", "/api/v1/analytics/batch-track", "admin"),
        ("GET", "/api/v1/analytics/keys/1", "admin"),
        ("GET", "/api/v1/analytics/monitoring/services/a/b", "admin"),
        ("GET", "/api/v1/analytics/monitoring/nope", "read"),
        ("GET", "/api/v1/analytics/alertsfoo", "read"),
        ("GET", "/api/v1/analytics/events", "read"),
        ("PUT", "/api/v1/analytics/events", "admin"),
        ("POST", "/api/v1/analytics/dashboard", "admin"),
        ("GET", "/api/v1/analytics/metrics/record", "read"),
    ],
)
def test_a_request_no_route_matches_needs_what_its_neighbours_need(
    method: str, path: str, expected: str | None
) -> None:
    assert required_scope(method, path) == expected


def test_metrics_with_a_key_required_asks_read_whatever_the_method() -> None:
    assert required_scope("GET", "/metrics", metrics_need_key=True) == "read"
    assert required_scope("POST", "/metrics", metrics_need_key=True) == "read"
    assert required_scope("GET", "/metrics") is None


def test_the_scope_is_decided_on_the_routed_path(db_url: str) -> None:
    _, key = keys.create(db_url, "reader", ["read"])
    settings = load({"DATABASE_URL": db_url, "MIGRATE_ON_START": "false", "RUN_SCHEDULER": "false"})
    with TestClient(create_app(settings), root_path="/behind/proxy") as client:
        answer = client.get(
            "/behind/proxy/api/v1/analytics/keys", headers={"Authorization": f"Bearer {key}"}
        )
        read = client.get(
            "/behind/proxy/api/v1/analytics/metrics", headers={"Authorization": f"Bearer {key}"}
        )

    assert answer.status_code == 403
    assert read.status_code == 200


def test_every_endpoint_refuses_no_key_and_the_wrong_scope(db_url: str) -> None:
    anonymous = make_client(db_url, scopes=None)
    clients = {scope: make_client(db_url, scopes=scope) for scope in ("ingest", "read", "admin")}
    with anonymous:
        for client in clients.values():
            client.__enter__()
        try:
            for method, path in ENDPOINTS:
                needed = required_scope(method, path)
                if needed is None:
                    assert call(anonymous, method, path).status_code in {200, 503}, path
                    continue
                refused = call(anonymous, method, path)
                assert refused.status_code == 401, (method, path)
                assert refused.json()["error"] == "unauthorized"
                for scope, client in clients.items():
                    answer = call(client, method, path)
                    if scope == needed:
                        assert answer.status_code not in {401, 403}, (method, path, scope)
                    else:
                        assert answer.status_code == 403, (method, path, scope)
                        assert answer.json()["details"] == [
                            {"field": "scope", "reason": f"needs {needed}"}
                        ]
        finally:
            for client in clients.values():
                client.__exit__(None, None, None)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Basic dXNlcjpwYXNz",
        "Bearer short",
        "Bearer ak_" + "x" * 43,
        "Bearer ak_' OR '1'='1",
    ],
)
def test_a_bad_key_is_a_401_that_reveals_nothing(db_url: str, header: str | None) -> None:
    with make_client(db_url, scopes=None) as client:
        headers = {"Authorization": header} if header else {}
        answer = client.get("/api/v1/analytics/metrics", headers=headers)

    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.json() == {
        "error": "unauthorized",
        "message": "A valid API key is required: send `Authorization: Bearer <key>`.",
        "details": [],
    }


def test_keys_are_created_shown_once_listed_and_revoked(db_url: str) -> None:
    with make_client(db_url, AUTH_CACHE_S="0") as admin:
        created = admin.post(KEYS, json={"name": "collector", "scopes": ["ingest"]})
        duplicate = admin.post(KEYS, json={"name": "collector", "scopes": ["read"]})
        bad = admin.post(KEYS, json={"name": "x", "scopes": ["root"]})
        digits = admin.post(KEYS, json={"name": "123", "scopes": ["read"]})
        key = created.json()["key"]
        as_collector = {"Authorization": f"Bearer {key}"}
        sent = admin.post(
            "/api/v1/analytics/events",
            json=[{"event_type": "page_view", "user_id": "u1"}],
            headers=as_collector,
        )
        listed = admin.get(KEYS).json()["keys"]
        revoked = admin.delete(f"{KEYS}/collector")
        again = admin.delete(f"{KEYS}/collector")
        after = admin.post(
            "/api/v1/analytics/events",
            json=[{"event_type": "page_view", "user_id": "u1"}],
            headers=as_collector,
        )

    assert created.status_code == 201 and key.startswith("ak_") and len(key) == 46
    assert created.json()["prefix"] == key[:10]
    assert duplicate.status_code == 409 and duplicate.json()["details"][0]["field"] == "name"
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "scopes"
    assert digits.status_code == 422 and digits.json()["details"][0]["field"] == "name"
    assert sent.status_code == 200
    assert [k["name"] for k in listed if k["name"] == "collector"] == ["collector"]
    assert all("key" not in k for k in listed)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert again.status_code == 404
    assert after.status_code == 401


def test_the_keys_command(db_url: str) -> None:
    created = jobs_cli("keys", "create", "--name", "ops", "--scopes", "read,admin", url=db_url)
    listed = jobs_cli("keys", "list", url=db_url)
    revoked = jobs_cli("keys", "revoke", "ops", url=db_url)
    unknown = jobs_cli("keys", "revoke", "ops", url=db_url)
    bad = jobs_cli("keys", "create", "--name", "x", "--scopes", "everything", url=db_url)

    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"ak_[A-Za-z0-9_\-]{43}", key)
    assert "ops" in listed.stdout and key[:10] in listed.stdout and key not in listed.stdout
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert unknown.returncode == 1 and "no live key" in unknown.stderr
    assert bad.returncode == 2 and "scopes" in bad.stderr


def test_auth_can_be_disabled_for_development(db_url: str) -> None:
    with make_client(db_url, scopes=None, AUTH_DISABLED="true") as client:
        assert client.get("/api/v1/analytics/metrics").status_code == 200


def test_metrics_can_be_put_behind_a_key(db_url: str) -> None:
    with make_client(db_url, scopes=None, METRICS_REQUIRE_KEY="true") as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/healthz").status_code == 200


def test_a_key_created_elsewhere_works_at_once(db_url: str) -> None:
    with make_client(db_url, scopes=None) as client:
        assert client.get("/healthz").status_code == 200  # the server has loaded its keys
        _, key = keys.create(db_url, "made by the CLI", ["read"])
        answer = client.get("/api/v1/analytics/metrics", headers={"Authorization": f"Bearer {key}"})

    assert answer.status_code == 200
