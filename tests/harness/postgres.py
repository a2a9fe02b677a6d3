"""A throwaway PostgreSQL (Debian's server binaries) in a temp dir on an ephemeral loopback
port: initdb + pg_ctl, trust auth on 127.0.0.1 only. As root the server runs as the
`postgres` user (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_service.mqtt.broker import free_port

HOST = "127.0.0.1"


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


class Postgres:
    def __init__(self) -> None:
        b = pg_bin()
        assert b is not None
        self.bin = b
        # Not under pytest's 0700 root-owned temp dir: the server user must reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="dgs-pg-"))
        self.port = free_port(HOST)
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def start(self) -> None:
        data = self.dir / "data"
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8")  # fmt: skip
        opts = f"-c listen_addresses={HOST} -c port={self.port} -c unix_socket_directories={self.dir} -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-o", opts, "-l",
                  str(self.dir / "log"), "-w", "-t", "60", "start")  # fmt: skip
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w",
                      "stop")  # fmt: skip
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    if pg_bin() is None:
        pytest.skip("PostgreSQL server is not installed (scripts/setup installs it)")
    pg = Postgres()
    pg.start()
    yield pg
    pg.stop()
