"""Samples of a protocol whose senders drop a refused request whole (remote write, OTLP): the
events that may be stored, which of them are running totals, and what was left out and why.

Such a request is never refused for one bad sample: the samples that cannot be stored are
left out and named (`refuse`), the others stored, and the protocol says so in its own terms
(remote write: a 400 with the written counts; OTLP: `partial_success`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ingest.distributions import Cumulative, Sketch
from ingest.wire import MetricEvent

MAX_REPORTED = 100


@dataclass(frozen=True)
class Family:
    """What a sender says of a metric family (remote write's metadata; an OTLP metric's
    description and unit): `kind` is Prometheus' metric type, 0 where unknown."""

    kind: int
    help: str = ""
    unit: str = ""


@dataclass
class Samples:
    events: list[MetricEvent] = field(default_factory=list)
    totals: dict[int, datetime | None] = field(default_factory=dict)  # index -> start time
    where: list[str] = field(default_factory=list)  # per event: its series, for errors
    distributions: dict[int, Sketch] = field(default_factory=dict)  # index -> its histogram
    histograms: dict[int, Cumulative] = field(default_factory=dict)  # index -> a cumulative one
    problems: list[dict[str, Any]] = field(default_factory=list)
    problem_count: int = 0
    families: dict[str, Family] = field(default_factory=dict)  # name -> what the sender said

    def refuse(self, where: str, reason: str, samples: int = 1) -> None:
        self.problem_count += samples
        if len(self.problems) < MAX_REPORTED:
            self.problems.append({"series": where, "reason": reason})
