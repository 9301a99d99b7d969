"""Every request example of the seed document, sent verbatim on a fresh database.

The examples are read from the seed itself (shared/seed/SPRINT_5_ANALYTICS.md, beside the
checkout), so this test follows the document: each `curl` block is one request (method, path
and query, headers, body exactly as written), and the `Response:` block after it, when there is
one, is the shape its answer must have: every key shown present, with the JSON type shown
(`[...]` and `{...}` stand for any list and any object). Before each request the data it
presupposes is recorded (events of the user it asks about, a service before the health
summary, ...), through the API like a user would. Only the API key is added to each request.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from starlette.routing import Match
from starlette.testclient import TestClient

from core.settings import load
from jobs.health import check_services
from service.app import create_app
from tests.support import make_client

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT.parent / "shared" / "seed" / "SPRINT_5_ANALYTICS.md"
API = "/api/v1/analytics"

ENDPOINT = re.compile(r"^- `(GET|POST|PUT|PATCH|DELETE) (/[^`]+)`", re.MULTILINE)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@dataclass
class Example:
    title: str  # the heading it is under
    method: str
    target: str  # path and query, as written
    headers: dict[str, str]
    body: bytes | None
    response: Any  # the documented answer, None when the seed shows none

    @property
    def path(self) -> str:
        return unquote(urlsplit(self.target).path)


def parse_curl(command: str) -> tuple[str, str, dict[str, str], bytes | None]:
    words = shlex.split(command.replace("\\\n", " "))
    assert words[0] == "curl", command
    method, url, headers, body = "GET", None, {}, None
    rest = iter(words[1:])
    for word in rest:
        if word in ("-X", "--request"):
            method = next(rest)
        elif word in ("-H", "--header"):
            name, _, value = next(rest).partition(":")
            headers[name.strip()] = value.strip()
        elif word in ("-d", "--data", "--data-raw"):
            body = next(rest).encode()
            method = "POST" if method == "GET" else method
        elif word.startswith("-"):
            raise AssertionError(f"a curl option this test does not know: {word}")
        else:
            url = word
    assert url is not None, command
    parts = urlsplit(url)
    return method, parts.path + (f"?{parts.query}" if parts.query else ""), headers, body


def documented(text: str) -> Any:
    """A response block as data; `[...]` and `{...}` become an empty list and object."""
    return json.loads(text.replace("[...]", "[]").replace("{...}", "{}"))


def seed_examples(text: str) -> list[Example]:
    examples: list[Example] = []
    blocks = list(FENCE.finditer(text))
    for i, block in enumerate(blocks):
        language, content = block.group(1), block.group(2)
        if language != "bash" or not content.lstrip().startswith("curl"):
            continue
        title = re.findall(r"^#+ (.+)$", text[: block.start()], re.MULTILINE)[-1]
        response = None
        if i + 1 < len(blocks):
            following = blocks[i + 1]
            between = text[block.end() : following.start()]
            if following.group(1) == "json" and between.strip() == "Response:":
                response = documented(following.group(2))
        examples.append(Example(title, *parse_curl(content.strip()), response))
    return examples


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def mismatches(shown: Any, got: Any, where: str = "$") -> list[str]:
    """How `got` strays from the shape of `shown` (keys present, JSON types, RFC 3339 times)."""
    wanted, found = json_type(shown), json_type(got)
    if wanted == "number" and found == "integer":
        found = "number"  # a JSON number either way
    if wanted != found:
        return [f"{where}: {wanted} expected (as {shown!r}), got {got!r}"]
    if isinstance(shown, dict):
        problems = [f"{where}.{key}: missing" for key in shown if key not in got]
        for key in shown.keys() & got.keys():
            problems += mismatches(shown[key], got[key], f"{where}.{key}")
        return problems
    if isinstance(shown, list) and shown:
        if not got:
            return [f"{where}: items like {shown[0]!r} expected, got an empty list"]
        return [
            problem
            for i, item in enumerate(got)
            for problem in mismatches(shown[0], item, f"{where}[{i}]")
        ]
    if isinstance(shown, str) and RFC3339.match(shown) and not RFC3339.match(got):
        return [f"{where}: an RFC 3339 time expected (as {shown!r}), got {got!r}"]
    return []


# The data each example presupposes, recorded through the API before it is sent.


def _events(client: TestClient, events: list[dict[str, Any]]) -> None:
    answer = client.post(f"{API}/events", json=events)
    assert answer.status_code == 200, answer.text


def _metric_events(client: TestClient, name: str) -> None:
    now = datetime.now(UTC) - timedelta(minutes=5)
    events = [
        {
            "metric_name": name,
            "value": value,
            "metric_type": "timer",
            "unit": "ms",
            "tags": {"endpoint": "/api/agents", "method": "GET"},
            "timestamp": (now - timedelta(minutes=i)).isoformat(),
        }
        for i, value in enumerate((50.0, 120.0, 125.5, 200.0, 350.0, 500.0))
    ]
    answer = client.post(f"{API}/metrics/batch", json=events)
    assert answer.status_code == 200, answer.text


def platform_activity(client: TestClient, example: Example, db_url: str) -> None:
    """Users, agents, contracts and payments of today: what the dashboard sums up."""
    _events(
        client,
        [
            {"event_type": "user_signup", "user_id": "seed_user_1"},
            {"event_type": "session_start", "user_id": "seed_user_1"},
            {"event_type": "agent_registered", "agent_id": "seed_agent_1"},
            {"event_type": "contract_created", "user_id": "seed_user_1", "contract_id": "c1"},
            {"event_type": "contract_created", "user_id": "seed_user_1", "contract_id": "c2"},
            {"event_type": "contract_won", "agent_id": "seed_agent_1", "contract_id": "c1"},
            {"event_type": "contract_completed", "agent_id": "seed_agent_1", "contract_id": "c1"},
            {"event_type": "payment", "user_id": "seed_user_1", "amount": 100.0, "fee": 15.0},
            {"event_type": "credits_purchased", "user_id": "seed_user_1", "amount": 200.0},
        ],
    )


def user_activity(client: TestClient, example: Example, db_url: str) -> None:
    """The user the example asks about, active today."""
    user = example.path.rsplit("/", 1)[-1]
    _events(
        client,
        [
            {"event_type": "session_start", "user_id": user},
            {"event_type": "page_view", "user_id": user},
            {"event_type": "contract_created", "user_id": user, "contract_id": f"{user}-c1"},
            {"event_type": "credits_spent", "user_id": user, "amount": 150.0},
            {"event_type": "orchestration_run", "user_id": user, "value": 3, "duration_ms": 900},
            {
                "event_type": "contract_completed",
                "user_id": user,
                "agent_id": "seed_agent_1",
                "contract_id": f"{user}-c1",
            },
        ],
    )


def metric_recorded(client: TestClient, example: Example, db_url: str) -> None:
    """Events of the metric whose statistics the example asks for, in its window."""
    _metric_events(client, example.path.split("/")[-2])


def services_checked(client: TestClient, example: Example, db_url: str) -> None:
    """The services the example response lists, registered and checked once."""
    database = urlsplit(db_url)
    for shown in example.response["services"]:
        registered = client.post(
            f"{API}/monitoring/services",
            json={
                "name": shown["service_name"],
                "service_type": "api",
                "check": {"kind": "tcp", "host": database.hostname, "port": database.port},
            },
        )
        assert registered.status_code == 201, registered.text
    check_services(db_url)


def metric_not_recorded(client: TestClient, example: Example, db_url: str) -> None:
    """The seed's rule comes first, as provisioned config does: its metric is not recorded yet."""
    metric = json.loads(example.body or b"{}")["metric_name"]
    assert client.get(f"{API}/metrics/{metric}/statistics").status_code == 404


PRESUPPOSES: list[tuple[str, str, Callable[[TestClient, Example, str], None]]] = [
    ("GET", rf"^{API}/dashboard$", platform_activity),
    ("GET", rf"^{API}/user/[^/]+$", user_activity),
    ("GET", rf"^{API}/metrics/[^/]+/statistics$", metric_recorded),
    ("GET", rf"^{API}/monitoring/health$", services_checked),
    ("POST", rf"^{API}/alerts/rules$", metric_not_recorded),
]


@pytest.fixture
def examples() -> list[Example]:
    if not SEED.is_file():
        pytest.skip(f"the seed document is not beside the checkout: {SEED} is missing")
    return seed_examples(SEED.read_text())


@pytest.fixture
def seed_client(db_url: str) -> Iterator[TestClient]:
    with make_client(db_url) as client:
        yield client


def test_every_seed_request_example_is_answered_in_its_documented_shape(
    examples: list[Example], seed_client: TestClient, db_url: str
) -> None:
    # The document's six examples, none lost to a parsing slip.
    assert [(e.method, e.path) for e in examples] == [
        ("GET", f"{API}/dashboard"),
        ("GET", f"{API}/user/user_123"),
        ("POST", f"{API}/metrics/record"),
        ("GET", f"{API}/metrics/api.response_time/statistics"),
        ("GET", f"{API}/monitoring/health"),
        ("POST", f"{API}/alerts/rules"),
    ]
    problems: list[str] = []
    for example in examples:
        for method, pattern, prepare in PRESUPPOSES:
            if example.method == method and re.match(pattern, example.path):
                prepare(seed_client, example, db_url)
        answer = seed_client.request(
            example.method, example.target, content=example.body, headers=example.headers
        )
        label = f"{example.title}: {example.method} {example.target}"
        if not 200 <= answer.status_code < 300:
            problems.append(f"{label}: {answer.status_code} {answer.text}")
            continue
        got = answer.json()
        if example.response is not None:
            problems += [f"{label}: {p}" for p in mismatches(example.response, got)]
        if answer.status_code == 201:  # a created thing shows what was sent
            sent = json.loads(example.body or b"{}")
            problems += [
                f"{label}: {key} sent as {value!r}, shown as {got.get(key)!r}"
                for key, value in sent.items()
                if got.get(key) != value
            ]
    assert not problems, "\n".join(problems)


def test_every_endpoint_the_seed_lists_is_served() -> None:
    if not SEED.is_file():
        pytest.skip(f"the seed document is not beside the checkout: {SEED} is missing")
    listed = ENDPOINT.findall(SEED.read_text())
    app = create_app(load({"DATABASE_URL": "postgresql://unused/none"}))

    def served(method: str, path: str) -> bool:
        scope = {"type": "http", "method": method, "path": re.sub(r"\{\w+\}", "7", path)}
        return any(route.matches(scope)[0] is Match.FULL for route in app.routes)

    assert len(listed) == 18
    assert [f"{m} {p}" for m, p in listed if not served(m, p)] == []


def test_the_shape_check_catches_what_it_must() -> None:
    shown = {"n": 1, "x": 1.5, "at": "2024-10-30T12:00:00Z", "items": [{"s": "a"}], "any": []}
    good = {"n": 2, "x": 3, "at": "2026-01-01T00:00:00+00:00", "items": [{"s": "b"}], "any": [1]}

    assert mismatches(shown, {**good, "extra": True}) == []
    assert mismatches(shown, {**good, "n": 2.0}) == ["$.n: integer expected (as 1), got 2.0"]
    assert mismatches(shown, {**good, "x": None}) == ["$.x: number expected (as 1.5), got None"]
    assert mismatches(shown, {**good, "at": "yesterday"})[0].startswith("$.at: an RFC 3339")
    assert mismatches(shown, {**good, "items": []})[0].startswith("$.items: items like")
    assert mismatches(shown, {k: v for k, v in good.items() if k != "any"}) == ["$.any: missing"]
