"""Is the benchmarked server durable? Figures from a server with fsync off say nothing of what
users get: `make bench` warns loudly and records the settings with the results."""

from __future__ import annotations

import sys

import psycopg

DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


def settings(url: str) -> dict[str, str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(DURABLE),)
        ).fetchall()
    return {name: setting for name, setting in rows}


def check(url: str) -> dict[str, object]:
    found = settings(url)
    relaxed = {name: value for name, value in found.items() if DURABLE[name] != value}
    if relaxed:
        banner = "!" * 78
        print(
            f"{banner}\nWARNING: the database server is NOT durable "
            f"({', '.join(f'{k}={v}' for k, v in sorted(relaxed.items()))}).\n"
            "Commit latency here is far below what a durable server gives: these figures are "
            "not the product's.\nFor real figures: ALTER SYSTEM SET fsync = on, "
            "synchronous_commit = on, full_page_writes = on; then restart the server.\n"
            f"{banner}",
            file=sys.stderr,
            flush=True,
        )
    return {"durable": not relaxed, **found}
