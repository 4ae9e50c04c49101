"""Shared fixtures: canonical ids, a raw-event factory, and a throwaway PostgreSQL server."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REC = "6ba7b811-9dad-11d1-80b4-00c04fd430c8"
USER = "6ba7b812-9dad-11d1-80b4-00c04fd430c8"
COURSE = "6ba7b814-9dad-11d1-80b4-00c04fd430c8"


def raw_event(**overrides: object) -> dict[str, object]:
    """A valid raw event as a dump would hold it; override or drop (value ...) fields."""
    event: dict[str, object] = {
        "event_type": "playback_started",
        "recording_id": REC,
        "user_id": USER,
        "session_id": "s1",
        "event_timestamp": "2026-09-01T10:00:00Z",
        "metadata": '{"position": 0, "quality": "720p"}',
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not ...}


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server on loopback for this test session; yields its connection string.

    Skips (with the reason) where no server can be started, except in CI, where it fails.
    """
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")

    def unavailable(reason: str) -> None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {reason}")
        pytest.skip(reason)

    if not (initdb and pg_ctl):
        unavailable("no PostgreSQL server binaries (apt-get install postgresql)")
    workdir = Path(tempfile.mkdtemp(prefix="vtp-pg-"))
    data = workdir / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    try:
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"], check=True, capture_output=True
        )
        opts = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = workdir / "log"
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-o", opts, "-l", str(log), "-w", "start"],
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        unavailable(f"could not start PostgreSQL: {exc}")
    try:
        yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, check=False)
        shutil.rmtree(workdir, ignore_errors=True)
