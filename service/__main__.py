"""`python -m service`: migrate (unless MIGRATE_ON_START=false), then serve the API."""

from __future__ import annotations

import logging
import sys

import uvicorn

from core import logs
from core.settings import SettingError, load
from monitoring.services import ServicesFileError, read_services_file
from service.app import create_app
from sql.migrate import MigrationError, migrate


def main() -> None:
    try:
        settings = load()
        url = settings.require_database_url()
        if settings.services_file:
            read_services_file(settings.services_file)
    except (SettingError, ServicesFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    logs.configure(settings.log_level, settings.log_format)
    logs.flush_before_termination()
    if settings.migrate_on_start:
        try:
            report = migrate(url)
        except MigrationError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)
        logging.getLogger("astraeus.migrate").info(
            "TimescaleDB %s (%s edition); %d migration(s) applied now, %d already",
            report.timescaledb_version,
            report.edition,
            len(report.applied),
            report.already_applied,
        )
    app = create_app(settings, migrate_first=False)
    # The event loop takes the GIL back from the ingest thread (ingest/offload.py) within 1 ms
    # instead of Python's 5: under load, queries answered a little sooner (one run each at 80%
    # of ingest capacity, within the bench's run-to-run spread: 24-hour statistics p95 157 ->
    # 149 ms, of one series 100 -> 77 ms) and ingest capacity did not fall (0.88 -> 0.93 of raw
    # COPY). For the whole process: the scheduler's and compactor's threads too.
    sys.setswitchinterval(0.001)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's loggers go through ours (JSON, request ids)
        access_log=False,  # the app logs each request itself, with its id
        lifespan="on",
    )


if __name__ == "__main__":
    main()
