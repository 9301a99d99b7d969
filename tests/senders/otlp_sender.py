"""An application instrumented with the OpenTelemetry SDK, exporting to us over OTLP/HTTP:
run by tests/ingest/test_otlp.py with the protobuf exporter (the project's virtualenv) or the
JSON one (its own virtualenv, tests/senders/otlp-json.txt: the two exporters' packages cannot
share one at the current versions).

    python otlp_sender.py protobuf|json ENDPOINT KEY cumulative|delta

Two exports of the same measurements, then the SDK's shutdown (which exports once more):
counter shop.orders {region=eu} +3 then +2; up-down counter shop.stock +10 then -4; gauge
shop.temperature 21.5 then 19.0; histogram shop.latency 0.2 then 0.4 (seconds); exponential
histogram shop.wait: 100 values 0.01 * 1.05^i in the first export."""

from __future__ import annotations

import sys

from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource


def main(encoding: str, endpoint: str, key: str, temporality: str) -> None:
    if encoding == "json":
        from opentelemetry.exporter.otlp.json.http.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    preferred = {}
    if temporality == "delta":
        preferred = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
    exporter = OTLPMetricExporter(
        endpoint=endpoint,
        headers={"Authorization": f"Bearer {key}"},
        preferred_temporality=preferred,
    )
    # Exports only when asked (force_flush) and at shutdown.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    resource = Resource.create({"service.name": "shop", "deployment.environment": "test"})
    exponential = View(
        instrument_name="shop.wait", aggregation=ExponentialBucketHistogramAggregation()
    )
    provider = MeterProvider(resource=resource, metric_readers=[reader], views=[exponential])
    meter = provider.get_meter("shop.instrumentation", "1.0")
    orders = meter.create_counter("shop.orders", unit="{order}", description="Orders placed.")
    stock = meter.create_up_down_counter("shop.stock", unit="{item}")
    temperature = meter.create_gauge("shop.temperature", unit="Cel")
    latency = meter.create_histogram("shop.latency", unit="s")
    wait = meter.create_histogram("shop.wait", unit="s")
    for i in range(100):
        wait.record(0.01 * 1.05**i)
    for added, moved, celsius, seconds in ((3, 10, 21.5, 0.2), (2, -4, 19.0, 0.4)):
        orders.add(added, {"region": "eu"})
        stock.add(moved)
        temperature.set(celsius)
        latency.record(seconds)
        if not provider.force_flush(timeout_millis=20_000):
            raise SystemExit("an export failed")
    provider.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
