"""Raw values in the form analytics.metric_event_store keeps them: a decimal where one is exact.

A value v is stored as `digits` m and `decimals` d when some d <= MAX_DECIMALS gives an integer
m = round(v * 10^d) with |m| <= 2^53 and m / 10^d == v in IEEE arithmetic; the database's
`analytics.event_value` computes the same division, so it gives back v bit for bit. The smallest
such d is taken (33.125 -> 33125, 3). Anything else (a float of 17 significant digits, -0.0, an
integer past 2^53) keeps its float8 in `value`. Why: a decimal as an integer compresses to a
third of the float's bytes (sql/migrations/0020_decimal_values.sql has the figures).

Two ways to the same columns, as for the deltas: numpy over a large group, plain Python over a
few events (the record path), where numpy's fixed cost per call would dominate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import numpy as np

MAX_DECIMALS = 15
EXACT = 2**53  # every integer up to here is a float8
POWERS = tuple(10.0**d for d in range(MAX_DECIMALS + 1))  # each exact
_POWERS = np.asarray(POWERS)
SMALL = 256  # values: below this, plain Python

Columns = tuple[list[float | None], list[int | None], list[int | None]]
"""(value, decimals, digits) per event: value None where decimals and digits hold it."""


def decimal(value: float) -> tuple[int, int] | None:
    """(decimals, digits) of `value`, or None where it must stay a float."""
    if not abs(value) <= EXACT or (value == 0 and math.copysign(1.0, value) < 0):
        return None  # (past 2^53 every scaled value would be too; NaN and inf are refused)
    for decimals, power in enumerate(POWERS):
        digits = round(value * power)
        if abs(digits) <= EXACT and digits / power == value:
            return decimals, digits
    return None


def columns(values: Sequence[float]) -> Columns:
    """The stored columns of `values`, in order."""
    if len(values) < SMALL:
        stored: list[float | None] = []
        scales: list[int | None] = []
        all_digits: list[int | None] = []
        for value in values:
            found = decimal(value)
            stored.append(value if found is None else None)
            scales.append(None if found is None else found[0])
            all_digits.append(None if found is None else found[1])
        return stored, scales, all_digits
    array = np.asarray(values, dtype=np.float64)
    scale = np.zeros(len(array), dtype=np.int16)
    digits = np.zeros(len(array), dtype=np.int64)
    done = np.zeros(len(array), dtype=np.bool_)
    todo = np.flatnonzero((np.abs(array) <= EXACT) & ~((array == 0) & np.signbit(array)))
    for decimals, power in enumerate(_POWERS):
        part = array[todo]
        with np.errstate(invalid="ignore", over="ignore"):
            scaled = np.rint(part * power)
            exact = (np.abs(scaled) <= EXACT) & (scaled / power == part)
        hit = todo[exact]
        scale[hit] = decimals
        digits[hit] = scaled[exact].astype(np.int64)
        done[hit] = True
        todo = todo[~exact]
        if not len(todo):
            break
    if done.all():
        return (
            [None] * len(array),
            cast(list[int | None], scale.tolist()),
            cast(list[int | None], digits.tolist()),
        )
    flags = done.tolist()
    return (
        [None if flag else value for flag, value in zip(flags, values, strict=True)],
        [s if flag else None for flag, s in zip(flags, scale.tolist(), strict=True)],
        [d if flag else None for flag, d in zip(flags, digits.tolist(), strict=True)],
    )
