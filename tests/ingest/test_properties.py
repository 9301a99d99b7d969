"""Property-based tests: whatever a client sends, the decoders and parameter parsers answer
with one of our 4xx errors or a value, never anything else (which would be a 500)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from core import params
from core.errors import ApiError
from core.settings import load
from ingest import events, wire
from ingest.tagsets import TagSets
from ingest.validate import validate
from ingest.wire import MetricEvent

SETTINGS = load({"DATABASE_URL": "postgresql://unused/x"})
NOW = datetime(2026, 1, 1, tzinfo=UTC)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = MetricEvent.__struct_fields__
EVENT_FIELDS = events.PlatformEvent.__struct_fields__
event_like = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=7)
platform_like = st.dictionaries(st.sampled_from(EVENT_FIELDS), json_values, max_size=8)


def only_our_errors(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except ApiError as exc:
        assert 400 <= exc.status < 500, exc
        return None


@FAST
@given(st.binary(max_size=300))
def test_metric_decoders_take_any_bytes(body: bytes) -> None:
    for decoder in (wire.decode_record, wire.decode_json_batch, wire.decode_ndjson):
        only_our_errors(decoder, body)


@FAST
@given(st.lists(event_like, max_size=5))
def test_metric_events_of_any_shape_are_validated_or_refused(items: list[dict[str, Any]]) -> None:
    body = json.dumps(items).encode()
    decoded = only_our_errors(wire.decode_json_batch, body)
    if decoded is not None:
        only_our_errors(validate, decoded, NOW, SETTINGS.ingest, TagSets(SETTINGS.ingest))


@FAST
@given(st.lists(platform_like, max_size=5), st.booleans())
def test_platform_events_of_any_shape_are_validated_or_refused(
    items: list[dict[str, Any]], ndjson: bool
) -> None:
    body = (
        b"\n".join(json.dumps(i).encode() for i in items) if ndjson else json.dumps(items).encode()
    )
    decoded = only_our_errors(events.decode, body, ndjson)
    if decoded is not None:
        only_our_errors(events.validate, decoded, NOW, SETTINGS.ingest)


@FAST
@given(st.binary(max_size=200), st.booleans())
def test_platform_decoder_takes_any_bytes(body: bytes, ndjson: bool) -> None:
    only_our_errors(events.decode, body, ndjson)


query_text = st.text(max_size=40) | st.sampled_from(
    [
        "1h",
        "1mo",
        "-1",
        "1e309",
        "nan",
        "2026-01-01T00:00:00Z",
        "0001-01-01T00:00:00+14:00",
        "region:eu,region:us",
        "a:b:c",
        "' OR 1=1 --",
        "\x00",
        "\uff19",  # a full-width nine
    ]
)


@FAST
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "hours",
                "start",
                "end",
                "tags",
                "group_by",
                "interval",
                "aggregation",
                "exact",
                "days",
                "limit",
                "tag.region",
                "period_start",
            ]
        ),
        query_text,
        max_size=5,
    )
)
def test_query_parameter_parsers_take_any_text(raw: dict[str, str]) -> None:
    query = QueryParams(raw)
    only_our_errors(params.window, query, NOW)
    only_our_errors(params.timestamp, query, "period_start")
    only_our_errors(params.number, query, "days", 30, 0, 3660)
    only_our_errors(params.whole_number, query, "limit", 50, 1, 1000)
    only_our_errors(params.flag, query, "exact")
    only_our_errors(params.tag_filters, query)
    only_our_errors(params.group_by, query)
    only_our_errors(params.interval, query)
    only_our_errors(params.aggregation, query)
