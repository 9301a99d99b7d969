"""Where the tests get a TimescaleDB: DATABASE_URL, else a container, else the local cluster.

Each test gets its own database, cloned from a template that was migrated once per session.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql as pgsql

from sql.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
DOCKER_IMAGE = "timescale/timescaledb:2.28.3-pg17"


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def docker_engine_answers() -> bool:
    """True when a Docker engine answers its /_ping on DOCKER_HOST or the default socket."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: Any = host.removeprefix("unix://")
        elif host.startswith("tcp://"):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            name, _, port = host.removeprefix("tcp://").partition(":")
            address = (name, int(port or 2375))
        else:
            return False
        with probe:
            probe.settimeout(3)
            probe.connect(address)
            probe.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in probe.recv(256)
    except OSError:
        return False


@contextlib.contextmanager
def server() -> Iterator[str]:
    """The URL of a database on a server where the tests may create databases."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
    elif docker_engine_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer(DOCKER_IMAGE, driver=None) as container:
            yield container.get_connection_url()
    else:
        name = f"test-{os.getpid()}"
        # Throwaway: deleted afterwards, so it runs without fsync (see bin/localdb).
        started = subprocess.run(
            [ROOT / "bin" / "localdb", "start", "--throwaway", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if started.returncode != 0:
            raise RuntimeError(f"bin/localdb start failed:\n{started.stderr}")
        try:
            yield started.stdout.strip().splitlines()[-1]
        finally:
            subprocess.run([ROOT / "bin" / "localdb", "destroy", name], check=False)


class Databases:
    """Creates the template once, then one cheap clone per test."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.prefix = f"astraeus_test_{os.getpid()}"
        self.template = f"{self.prefix}_template"
        self._numbers = itertools.count()

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.server_url, autocommit=True)

    def create_template(self) -> None:
        with self.admin() as conn:
            conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(self.template)))
        migrate(with_database(self.server_url, self.template))
        with self.admin() as conn:
            # A template must have no connections when cloned; TimescaleDB's scheduler skips
            # templates, so none come back once these are gone.
            conn.execute(
                pgsql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                    pgsql.Identifier(self.template)
                )
            )
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.template,),
            )

    def create(self, template: str | None = None) -> str:
        """A new database cloned from the migrated template (or from `template`)."""
        name = f"{self.prefix}_{next(self._numbers)}"
        with self.admin() as conn:
            conn.execute(
                pgsql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    pgsql.Identifier(name), pgsql.Identifier(template or self.template)
                )
            )
        return with_database(self.server_url, name)

    def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with self.admin() as conn:
            conn.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
            )

    def drop_all(self) -> None:
        with self.admin() as conn:
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{self.prefix}%",)
                )
            ]
            for name in names:
                conn.execute(
                    pgsql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(
                        pgsql.Identifier(name)
                    )
                )
                conn.execute(
                    pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        pgsql.Identifier(name)
                    )
                )
