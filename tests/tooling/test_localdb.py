"""bin/localdb: where the source comes from, what it writes, and how durable its clusters are."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import psycopg
import pytest

from tests.databases import ROOT, docker_engine_answers

LOCALDB = ROOT / "bin" / "localdb"


def localdb(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LOCALDB, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text))
    return path


# -- the mirror ---------------------------------------------------------------------------------


def mirror_of(root: Path, **env: str) -> str:
    picked = localdb("mirror", LOCALDB_SYSTEM_ROOT=str(root), **env)
    assert picked.returncode == 0, picked.stderr
    return picked.stdout.strip()


def test_the_mirror_comes_from_a_one_line_sources_list(tmp_path: Path) -> None:
    write(
        tmp_path / "etc/apt/sources.list",
        """\
        # deb http://commented-out.example/debian bookworm main
        deb [signed-by=/etc/vendor.gpg] http://apt.vendor.example/repo vendor-bookworm main
        deb http://mirror.lan/debian-security bookworm-security main
        deb [arch=amd64] http://mirror.lan:3142/debian bookworm main contrib
        """,
    )
    assert mirror_of(tmp_path) == "http://mirror.lan:3142/debian"


def test_the_mirror_comes_from_deb822_sources(tmp_path: Path) -> None:
    write(
        tmp_path / "etc/apt/sources.list.d/nodesource.sources",
        """\
        Types: deb
        URIs: https://deb.nodesource.com/node_20.x
        Suites: nodistro
        Components: main
        """,
    )
    write(
        tmp_path / "etc/apt/sources.list.d/debian.sources",
        """\
        Types: deb
        URIs: http://old-mirror.lan/debian
        Suites: bookworm
        Components: main
        Enabled: no

        Types: deb deb-src
        # http://snapshot.debian.org/archive/debian/20250520T000000Z
        URIs: http://mirror.lan/debian
        Suites: bookworm bookworm-updates
        Components: main
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

        Types: deb
        URIs: http://mirror.lan/debian-security
        Suites: bookworm-security
        Components: main
        """,
    )
    assert mirror_of(tmp_path) == "http://mirror.lan/debian"


def test_the_mirror_can_be_set_and_has_a_default(tmp_path: Path) -> None:
    write(tmp_path / "etc/apt/sources.list", "deb http://mirror.lan/debian bookworm main\n")
    assert mirror_of(tmp_path, LOCALDB_DEBIAN_MIRROR="http://chosen.lan/debian") == (
        "http://chosen.lan/debian"
    )
    nothing = tmp_path / "empty"
    (nothing / "etc/apt").mkdir(parents=True)
    assert mirror_of(nothing) == "http://deb.debian.org/debian"


# An apt-get that logs the mirror each call reads from its sources list, with deb.debian.org
# the only mirror that has trixie's sources: no network in tests.
FAKE_APT_GET = """\
#!/bin/sh
list=$(printf '%s\\n' "$@" | sed -n 's/^Dir::Etc::SourceList=//p')
mirror=$(awk '{ print $2 }' "$list")
case " $* " in *" source "*) verb=source ;; *) verb=update ;; esac
echo "$mirror $verb" >>"$FAKE_APT_LOG"
[ "$mirror" = http://deb.debian.org/debian ] || { echo "E: no trixie in $mirror" >&2; exit 100; }
[ $verb = update ] || : >timescaledb_2.19.3+dfsg.orig.tar.xz
"""


def fetched(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`localdb fetch` with the fake apt-get, and the mirror and verb of each call it made."""
    write(tmp_path / "system/etc/apt/sources.list", "deb http://mirror.lan/debian bookworm main\n")
    write(tmp_path / "bin/apt-get", FAKE_APT_GET).chmod(0o755)
    log = tmp_path / "apt.log"
    result = localdb(
        "fetch",
        LOCALDB_SYSTEM_ROOT=str(tmp_path / "system"),
        LOCALDB_DIR=str(tmp_path / "state"),
        PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        FAKE_APT_LOG=str(log),
        **env,
    )
    return result, log.read_text().splitlines() if log.exists() else []


def test_a_mirror_without_trixies_sources_falls_back_to_deb_debian_org(tmp_path: Path) -> None:
    result, calls = fetched(tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "state/src/timescaledb_2.19.3+dfsg.orig.tar.xz")
    assert calls == [
        "http://mirror.lan/debian update",
        "http://deb.debian.org/debian update",
        "http://deb.debian.org/debian source",
    ]
    assert "retrying with http://deb.debian.org/debian" in result.stderr


def test_a_chosen_mirror_is_not_second_guessed(tmp_path: Path) -> None:
    result, calls = fetched(tmp_path, LOCALDB_DEBIAN_MIRROR="http://chosen.lan/debian")

    assert result.returncode == 1
    assert calls == ["http://chosen.lan/debian update"]
    assert "could not fetch the timescaledb source package from http://chosen.lan/debian" in (
        result.stderr
    )


# -- the overlay --------------------------------------------------------------------------------


def fake_system(root: Path) -> dict[Path, bytes]:
    """A system PostgreSQL 15 with a TimescaleDB of its own installed; its files and contents."""
    version = "#!/bin/sh\necho 'postgres (PostgreSQL) 15.99 (fake)'\n"
    for name in ("postgres", "initdb", "pg_ctl", "pg_config"):
        write(root / "usr/lib/postgresql/15/bin" / name, version).chmod(0o755)
    write(root / "usr/include/postgresql/15/server/postgres.h", "/* fake */\n")
    files = {
        root / "usr/lib/postgresql/15/lib/plpgsql.so": b"system plpgsql",
        root / "usr/lib/postgresql/15/lib/timescaledb.so": b"system timescaledb loader",
        root / "usr/lib/postgresql/15/lib/timescaledb-2.0.0.so": b"system timescaledb 2.0.0",
        root / "usr/share/postgresql/15/postgresql.conf.sample": b"# sample",
        root / "usr/share/postgresql/15/extension/plpgsql.control": b"plpgsql control",
        root / "usr/share/postgresql/15/extension/timescaledb.control": b"system control",
        root / "usr/share/postgresql/15/extension/timescaledb--2.0.0.sql": b"system sql",
    }
    for path, content in files.items():
        write(path, content)
    return files


def test_assembling_the_overlay_leaves_the_systems_timescaledb_alone(tmp_path: Path) -> None:
    system = fake_system(tmp_path / "system")
    dest = tmp_path / "dest"  # what the build installs, under its DESTDIR
    built = {
        "lib/postgresql/15/lib/timescaledb.so": b"new loader",
        "lib/postgresql/15/lib/timescaledb-2.19.3.so": b"new timescaledb 2.19.3",
        "share/postgresql/15/extension/timescaledb.control": b"new control",
        "share/postgresql/15/extension/timescaledb--2.19.3.sql": b"new sql",
    }
    for name, content in built.items():
        write(dest / "usr" / name, content)
    state = tmp_path / "state"
    overlay = state / "pg15-timescaledb"
    # What an earlier bin/localdb left: the system's timescaledb files linked into the overlay.
    for path in system:
        if path.name.startswith("timescaledb"):
            link = overlay / path.relative_to(tmp_path / "system" / "usr")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)

    assembled = localdb(
        "assemble", str(dest), LOCALDB_SYSTEM_ROOT=str(tmp_path / "system"), LOCALDB_DIR=str(state)
    )

    assert assembled.returncode == 0, assembled.stderr
    assert {path: path.read_bytes() for path in system} == system
    for name, content in built.items():
        assert not (overlay / name).is_symlink()
        assert (overlay / name).read_bytes() == content
    # The system's own TimescaleDB is not in the overlay at all; everything else is linked.
    assert not (overlay / "lib/postgresql/15/lib/timescaledb-2.0.0.so").exists()
    assert not (overlay / "share/postgresql/15/extension/timescaledb--2.0.0.sql").exists()
    plpgsql = overlay / "lib/postgresql/15/lib/plpgsql.so"
    assert plpgsql.is_symlink()
    assert plpgsql.read_bytes() == b"system plpgsql"


def built_into(dest: Path, version: str, *, share: bool = True) -> Path:
    """What the build of `version` installs under its DESTDIR (without its share/ files: a
    build that went wrong)."""
    write(dest / "usr/lib/postgresql/15/lib/timescaledb.so", f"loader {version}")
    write(dest / "usr/lib/postgresql/15/lib/timescaledb-2.19.3.so", f"timescaledb {version}")
    if share:
        write(dest / "usr/share/postgresql/15/extension/timescaledb.control", f"control {version}")
    return dest


def test_a_rebuild_replaces_the_overlay_whole_under_a_running_server(tmp_path: Path) -> None:
    fake_system(tmp_path / "system")
    state = tmp_path / "state"
    overlay = state / "pg15-timescaledb"
    env = {"LOCALDB_SYSTEM_ROOT": str(tmp_path / "system"), "LOCALDB_DIR": str(state)}
    library = overlay / "lib/postgresql/15/lib/timescaledb-2.19.3.so"
    control = overlay / "share/postgresql/15/extension/timescaledb.control"
    assert localdb("assemble", str(built_into(tmp_path / "one", "one")), **env).returncode == 0

    with library.open() as loaded:  # as a server running from the overlay has it
        failed = localdb("assemble", str(built_into(tmp_path / "bad", "bad", share=False)), **env)
        # A failed rebuild leaves the overlay the server runs from as it was.
        assert failed.returncode != 0
        assert (library.read_text(), control.read_text()) == ("timescaledb one", "control one")
        assert (overlay / "lib/postgresql/15/lib/plpgsql.so").read_bytes() == b"system plpgsql"

        rebuilt = localdb("assemble", str(built_into(tmp_path / "two", "two")), **env)

        assert rebuilt.returncode == 0, rebuilt.stderr
        assert loaded.read() == "timescaledb one"
    assert (library.read_text(), control.read_text()) == ("timescaledb two", "control two")
    assert (overlay / "lib/postgresql/15/bin/postgres").exists()
    assert sorted(path.name for path in state.iterdir()) == ["build.lock", overlay.name]

    # Two test runs rebuilding at once: one after the other, each leaving a whole overlay.
    together = [
        subprocess.Popen(
            [LOCALDB, "assemble", str(built_into(tmp_path / name, name))],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        for name in ("three", "four", "five")
    ]
    said = [process.communicate()[1] for process in together]
    assert [process.returncode for process in together] == [0, 0, 0], said
    assert library.read_text() in {"timescaledb three", "timescaledb four", "timescaledb five"}
    assert control.read_text() == library.read_text().replace("timescaledb", "control")
    assert sorted(path.name for path in state.iterdir()) == ["build.lock", overlay.name]


# -- durability ---------------------------------------------------------------------------------

DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")


def settings_of(url: str) -> dict[str, str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(DURABILITY),)
        )
        return dict(rows.fetchall())


def started(*args: str) -> tuple[str, str]:
    """The DATABASE_URL of the cluster started and what bin/localdb said on the way."""
    result = localdb("start", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1], result.stderr


@pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")) or docker_engine_answers(),
    reason="the suite does not use bin/localdb here",
)
def test_kept_clusters_are_durable_and_only_throwaway_ones_are_not() -> None:
    name = f"durability-{os.getpid()}"
    try:
        url, _ = started(name)
        assert settings_of(url) == dict.fromkeys(DURABILITY, "on")

        # A cluster an earlier bin/localdb created with the relaxed settings in postgresql.conf.
        localdb("stop", name)
        conf = ROOT / ".local" / "clusters" / name / "data" / "postgresql.conf"
        if not conf.exists():  # in /tmp: the checkout is not readable by the server's user
            pytest.skip("the cluster's files are not in the checkout")
        with conf.open("a") as relaxed:
            relaxed.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        url, said = started(name)
        assert "durable defaults" in said
        assert settings_of(url) == dict.fromkeys(DURABILITY, "on")

        # The one knob docs/local-database.md offers, set as it says; kept across restarts,
        # url still works.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_commit = off")
        localdb("stop", name)
        url, _ = started(name)
        assert localdb("url", name).stdout.strip() == url
        assert settings_of(url) == {**dict.fromkeys(DURABILITY, "on"), "synchronous_commit": "off"}

        localdb("stop", name)
        url, _ = started("--throwaway", name)
        assert settings_of(url) == dict.fromkeys(DURABILITY, "off")
    finally:
        localdb("destroy", name)
