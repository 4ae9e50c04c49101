"""Servers on loopback for the tests, the benchmarks and docs/make_screenshots.py.

A throwaway PostgreSQL server, Voila serving a notebook, and how to start Debian's Chromium
headless without it reaching the network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Headless Chromium as root, with no background connections (this machine's network is closed)."""


def unavailable(reason: str) -> None:
    """Skip the test with ``reason``, except in CI, where what it needs must be there: fail."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be started here (the message says why)."""


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PASSWORD_ROLE = "vtp_password"
"""The one role :func:`running_postgres` asks a password of (every other is trusted); create it to use it."""


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """Start a server in a temporary folder on a free loopback port; yield its connection string."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        raise PostgresUnavailable("no PostgreSQL server binaries (apt-get install postgresql)")
    workdir = Path(tempfile.mkdtemp(prefix="vtp-pg-"))
    data = workdir / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(workdir, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    try:
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"], check=True, capture_output=True
        )
        hba = data / "pg_hba.conf"  # trust, but a password for the role PASSWORD_ROLE (wrong-password tests)
        hba.write_text(
            f"local all all trust\nhost all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
        )
        opts = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1"
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-o", opts, "-l", str(workdir / "log"), "-w", "start"],
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise PostgresUnavailable(f"could not start PostgreSQL: {exc}") from exc
    try:
        yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, check=False)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def running_voila(notebook: Path, *, timeout: float = 90) -> Iterator[str]:
    """Serve ``notebook`` with Voila on a free loopback port (its folder as the working directory); yield the URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", str(notebook), f"--port={port}", "--no-browser", "--Voila.ip=127.0.0.1"],
        cwd=notebook.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@dataclasses.dataclass(frozen=True)
class VtpServer:
    """A ``vtp-lab serve`` subprocess: its base URL, store and process."""

    url: str
    store: Path
    proc: subprocess.Popen[bytes]


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"vtp-lab serve exited with {proc.returncode}: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=2)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"vtp-lab serve did not answer at {url} within {timeout} s")


@contextlib.contextmanager
def running_server(command: list[str], port: int, *, store: Path, timeout: float = 60) -> Iterator[VtpServer]:
    """Start ``command``, the API on ``port`` of loopback, and wait until it answers; SIGTERM it at the end."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, timeout)
        yield VtpServer(url=url, store=store, proc=proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=60)


@contextlib.contextmanager
def running_vtp_server(store: Path, *args: str, timeout: float = 60) -> Iterator[VtpServer]:
    """Start ``vtp-lab serve --store STORE ARGS`` on a free loopback port; SIGTERM it at the end."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "vtp_lab.cli",
        "serve",
        "--store",
        str(store),
        "--port",
        str(port),
        "--log-level",
        "warning",
        *args,
    ]
    with running_server(command, port, store=store, timeout=timeout) as server:
        yield server


def copy_csv_exports(con: object, schema: str, written: list[Path]) -> None:
    """Create ``schema`` afresh with the platform's schema 005 and ``COPY`` vtp_lab's CSV exports into it (psycopg)."""
    ddl = (Path(__file__).resolve().parents[1] / "schema/postgres/005_analytics_schema.sql").read_text()
    con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET search_path TO {schema}")  # type: ignore[attr-defined]
    con.execute(ddl)  # type: ignore[attr-defined]
    for path in written:
        with con.cursor().copy(f"COPY {path.stem} FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:  # type: ignore[attr-defined]
            copy.write(path.read_bytes())


def url_of(dsn: str, *, user: str = "postgres", password: str | None = None, dbname: str | None = None) -> str:
    """The fixture's key=value connection string as a postgresql:// URI (of database ``dbname`` if given)."""
    kv = dict(part.split("=", 1) for part in dsn.split())
    secret = f":{password}" if password else ""
    return f"postgresql://{user}{secret}@{kv['host']}:{kv['port']}/{dbname or kv['dbname']}"
