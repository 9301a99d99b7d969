from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.support import make_client

BATCH = "/api/v1/analytics/metrics/batch"


def ev(name: str, value: float, kind: str = "timer", **tags: str) -> dict[str, Any]:
    when = datetime.now(UTC) - timedelta(minutes=5)
    return {
        "metric_name": name,
        "value": value,
        "metric_type": kind,
        "unit": "ms",
        "tags": tags,
        "timestamp": when.isoformat(),
    }


def test_metrics_are_listed_with_type_unit_and_series(client: TestClient) -> None:
    client.post(
        BATCH,
        json=[
            ev("b.latency", 1, host="a"),
            ev("b.latency", 2, host="b"),
            ev("a.count", 1, "counter"),
        ],
    )

    listed = client.get("/api/v1/analytics/metrics").json()["metrics"]

    assert [(m["name"], m["metric_type"], m["unit"], m["series"]) for m in listed] == [
        ("a.count", "counter", "ms", 1),
        ("b.latency", "timer", "ms", 2),
    ]


def test_tags_of_a_metric_list_keys_and_values(client: TestClient) -> None:
    client.post(BATCH, json=[ev("m", 1, host="a", region="eu"), ev("m", 2, host="b", region="eu")])

    answer = client.get("/api/v1/analytics/metrics/m/tags").json()

    assert answer == {
        "metric_name": "m",
        "tags": [
            {
                "key": "host",
                "values": [{"value": "a", "series": 1}, {"value": "b", "series": 1}],
                "next": None,
            },
            {"key": "region", "values": [{"value": "eu", "series": 2}], "next": None},
        ],
    }


def test_a_tag_listing_comes_a_page_at_a_time(client: TestClient) -> None:
    pods = [f"p{i:02d}" for i in range(25)]
    client.post(BATCH, json=[ev("m", 1, pod=pod, region="eu") for pod in pods])
    path = "/api/v1/analytics/metrics/m/tags"

    first = client.get(path, params={"limit": "10"}).json()["tags"]
    assert [(t["key"], len(t["values"]), t["next"]) for t in first] == [
        ("pod", 10, "p09"),
        ("region", 1, None),
    ]
    seen = [v["value"] for v in first[0]["values"]]
    after = first[0]["next"]
    while after is not None:
        page = client.get(path, params={"key": "pod", "limit": "10", "after": after}).json()
        assert [t["key"] for t in page["tags"]] == ["pod"]
        seen += [v["value"] for v in page["tags"][0]["values"]]
        after = page["tags"][0]["next"]
    assert seen == pods

    refused = client.get(path, params={"after": "p09"})
    assert refused.status_code == 400
    assert refused.json()["details"][0]["field"] == "after"
    assert client.get(path, params={"limit": "0"}).status_code == 400
    assert client.get(path, params={"key": "nope"}).json()["tags"] == []


def test_tag_filters_select_series_by_index_and_combine_as_documented(
    client: TestClient,
) -> None:
    client.post(
        BATCH,
        json=[
            ev("m", 1, pod="a", region="eu"),
            ev("m", 2, pod="b", region="eu"),
            ev("m", 4, pod="c", region="us"),
            ev("other", 8, pod="a", region="eu"),
        ],
    )
    path = "/api/v1/analytics/metrics/m/statistics"

    def total(*filters: tuple[str, str]) -> int:
        answer = client.get(path, params=[("hours", "1"), *filters]).json()
        return int(answer["sum"] or 0)

    assert total() == 7
    assert total(("tag.region", "eu")) == 3  # one tag
    assert total(("tag.pod", "a"), ("tag.pod", "c")) == 5  # OR within a tag
    assert total(("tag.pod", "a"), ("tag.pod", "c"), ("tag.region", "eu")) == 1  # AND across
    assert total(("tag.pod", "zzz")) == 0


@pytest.mark.parametrize("path", ["statistics", "time-series", "tags"])
def test_an_unknown_metric_is_a_404_everywhere(client: TestClient, path: str) -> None:
    response = client.get(f"/api/v1/analytics/metrics/nothing.here/{path}")

    assert response.status_code == 404
    assert "nothing.here" in response.json()["message"]


def test_the_performance_summary_reads_the_built_in_metrics(client: TestClient) -> None:
    client.post(
        BATCH,
        json=[
            ev("api.response_time", 100, endpoint="/api/agents", method="GET", status="200"),
            ev("api.response_time", 300, endpoint="/api/agents", method="GET", status="503"),
            ev("api.response_time", 200, endpoint="/api/users", method="POST", status="201"),
            ev("contract.execution_time", 1000, agent="a1", success="true"),
            ev("contract.execution_time", 3000, agent="a2", success="false"),
            ev("orchestration.duration", 50, pattern="fan-out"),
            ev("orchestration.agent_count", 4, "gauge", pattern="fan-out"),
        ],
    )

    summary = client.get("/api/v1/analytics/performance?hours=1").json()

    api = summary["api"]
    assert (api["calls"], api["errors"], api["error_rate"]) == (3, 1, pytest.approx(1 / 3))
    assert api["avg_response_time_ms"] == pytest.approx(200)
    assert [(e["endpoint"], e["count"]) for e in api["by_endpoint"]] == [
        ("/api/agents", 2),
        ("/api/users", 1),
    ]
    contracts = summary["contracts"]
    assert (contracts["executions"], contracts["successful"]) == (2, 1)
    assert contracts["success_rate"] == 0.5
    orchestrations = summary["orchestrations"]
    assert orchestrations["runs"] == 1
    assert orchestrations["avg_agent_count"] == 4


def test_the_performance_summary_percentiles_of_one_call_are_that_call(
    client: TestClient,
) -> None:
    # 125.5 ms keys to a sketch bucket whose representative is 125.598 ms.
    client.post(
        BATCH,
        json=[
            ev("api.response_time", 125.5, endpoint="/api/agents", method="GET", status="200"),
            ev("contract.execution_time", 125.5, agent="a1", success="true"),
            ev("orchestration.duration", 125.5, pattern="fan-out"),
        ],
    )

    summary = client.get("/api/v1/analytics/performance?hours=1").json()

    api, contracts, runs = summary["api"], summary["contracts"], summary["orchestrations"]
    assert (api["p50_ms"], api["p95_ms"], api["p99_ms"]) == (125.5, 125.5, 125.5)
    assert [e["p95_ms"] for e in api["by_endpoint"] + api["by_method"]] == [125.5, 125.5]
    assert contracts["p95_ms"] == contracts["by_agent"][0]["p95_ms"] == 125.5
    assert runs["p95_duration_ms"] == runs["by_pattern"][0]["p95_ms"] == 125.5


def test_the_performance_summary_of_nothing_is_zeros(client: TestClient) -> None:
    summary = client.get("/api/v1/analytics/performance").json()

    assert summary["api"]["calls"] == 0
    assert summary["api"]["error_rate"] is None
    assert summary["contracts"]["by_agent"] == []


@pytest.fixture
def capped(db_url: str) -> Iterator[TestClient]:
    with make_client(db_url, QUERY_MAX_RAW_ROWS="5") as client:
        yield client


def test_queries_that_would_read_too_many_raw_events_are_refused(capped: TestClient) -> None:
    # Three days ago: past the minute tier's horizon (48 h for a whole metric), so 5-minute
    # buckets there come from raw events.
    old = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    capped.post(
        BATCH, json=[{**ev("m", float(i)), "timestamp": old.isoformat()} for i in range(10)]
    )
    window = {
        "start": (old - timedelta(hours=1)).isoformat(),
        "end": (old + timedelta(hours=1)).isoformat(),
    }

    exact = capped.get("/api/v1/analytics/metrics/m/statistics", params={**window, "exact": "true"})
    fine = capped.get(
        "/api/v1/analytics/metrics/m/time-series", params={**window, "interval": "5m"}
    )
    rolled = capped.get("/api/v1/analytics/metrics/m/statistics", params=window)
    capped.post(BATCH, json=[ev("m", float(i)) for i in range(10)])
    recent = capped.get("/api/v1/analytics/metrics/m/time-series?interval=5m&hours=1")

    for refused in (exact, fine):
        assert refused.status_code == 422
        assert refused.json()["error"] == "query_too_expensive"
        assert "10 raw events; the limit is 5" in refused.json()["message"]
    assert rolled.status_code == 200
    assert rolled.json()["count"] == 10
    # Within the minute tier's horizon, minute buckets read no raw event.
    assert recent.status_code == 200
    assert recent.json()["resolution"] == "1m"
    assert sum(p["value"] is not None for p in recent.json()["points"]) >= 1


SQL_INJECTION = ["' OR 1=1 --", "x'; DROP TABLE analytics.metrics; --", "$$", "\\", 'a"b']


@pytest.mark.parametrize("hostile", SQL_INJECTION)
def test_tag_filters_and_group_by_are_values_not_sql(client: TestClient, hostile: str) -> None:
    client.post(BATCH, json=[ev("m", 1, host="a")])

    filtered = client.get(
        "/api/v1/analytics/metrics/m/statistics",
        params={f"tag.{hostile}": hostile, "group_by": hostile},
    )
    listed = client.get("/api/v1/analytics/metrics")

    assert filtered.status_code == 200
    assert filtered.json()["groups"] == []
    assert [m["name"] for m in listed.json()["metrics"]] == ["m"]
