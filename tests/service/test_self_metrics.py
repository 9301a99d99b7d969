"""GET /metrics: the service's own figures in Prometheus exposition format."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_count_what_clients_notice(client: TestClient) -> None:
    batch = [{"metric_name": "m", "value": v, "metric_type": "gauge"} for v in range(3)]
    assert client.post("/api/v1/analytics/metrics/batch", json=batch).status_code == 200
    assert (
        client.post(
            "/api/v1/analytics/events", json=[{"event_type": "page_view", "user_id": "u1"}]
        ).status_code
        == 200
    )
    assert client.post("/api/v1/analytics/metrics/batch", json=[{"value": 1}]).status_code == 422
    assert client.get("/nowhere").status_code == 404

    found = scrape(client)

    assert found[("astraeus_ingest_events_total", (("kind", "metric"),))] == 3
    assert found[("astraeus_ingest_events_total", (("kind", "platform"),))] == 1
    assert found[("astraeus_ingest_batch_events_count", (("kind", "metric"),))] == 1
    assert found[("astraeus_ingest_bytes_total", (("kind", "metric"),))] > 0
    assert found[("astraeus_refused_requests_total", (("reason", "validation_failed"),))] == 1
    assert found[("astraeus_refused_requests_total", (("reason", "not_found"),))] == 1
    route = (("method", "POST"), ("route", "/api/v1/analytics/metrics/batch"), ("status", "200"))
    assert found[("astraeus_http_requests_total", route)] == 1
    assert (
        found[
            (
                "astraeus_http_requests_total",
                (("method", "GET"), ("route", "unmatched"), ("status", "404")),
            )
        ]
        == 1
    )
    assert found[("astraeus_ingest_commit_seconds_count", ())] >= 1
    assert found[("astraeus_db_pool_connections", (("state", "max"),))] >= 2
    assert ("astraeus_ingest_queue_events", ()) in found
    assert found[("astraeus_refresh_lag_seconds", (("job", "track"),))] >= 0
    assert ("astraeus_notification_failures_24h", ()) in found
