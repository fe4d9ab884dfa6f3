"""Shared fixtures: one private local Ray cluster and one tiny model per test session (ray.init costs 3-5 s), one
private PostgreSQL server per session for the run store's and the API's tests, and a headless browser per module."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TEST_NAMESPACE = "visiong1-test"


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium: Debian's `chromium` driven by Playwright (its own browser download cannot run here);
    `--no-sandbox` because CI runs as root, where Chromium's sandbox refuses to start."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the dev extra installs playwright")
    chromium = shutil.which("chromium")
    assert chromium, "the run page tests need Debian's chromium: apt-get install chromium"
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_model(model_cache) -> str:
    from visiong1.models.tiny import tiny_model_path

    return str(tiny_model_path(model_cache, seed=0))


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A local cluster owned by this session; 8 logical CPUs so concurrent runs' actors can all schedule."""
    import ray

    from visiong1.cluster import connect

    os.environ.setdefault("VISIONG1_RAY_TMP", "/tmp")
    connect(address=None, num_cpus=8, namespace=TEST_NAMESPACE)
    yield ray
    ray.shutdown()


# PostgreSQL server -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PostgresServer:
    socket_dir: Path
    port: int

    def url(self, database: str) -> str:
        # Plain postgresql:// on purpose: the store must pick psycopg 3 by itself.
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def create_database(self) -> str:
        import psycopg

        name = f"store_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name


def postgres_bin_dir() -> Path | None:
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return installed[-1].parent if installed else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL server in a temp directory, listening only on a unix socket in that directory."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        pytest.skip("PostgreSQL server binaries (initdb, postgres) not found: install PostgreSQL to run these tests")
    account = None
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the PostgreSQL server as")
    as_user = dict(user=account.pw_uid, group=account.pw_gid, extra_groups=[]) if account else {}
    root = Path(tempfile.mkdtemp(prefix="visiong1-pg-"))
    try:
        if account:
            os.chown(root, account.pw_uid, account.pw_gid)
        subprocess.run([str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "postgres", "--auth=trust",
                        "--no-sync", "--no-locale", "-E", "UTF8"],
                       cwd=root, check=True, capture_output=True, **as_user)
        port = free_port()
        log_path = root / "server.log"
        with open(log_path, "wb") as log:
            # fsync off: the server's own durability is not under test; the store's commit-before-return is.
            server = subprocess.Popen([str(bin_dir / "postgres"), "-D", str(root / "data"), "-p", str(port),
                                       "-k", str(root), "-c", "listen_addresses=", "-c", "fsync=off"],
                                      cwd=root, stdout=log, stderr=subprocess.STDOUT, **as_user)
        try:
            instance = PostgresServer(root, port)
            wait_until_accepting(instance, server, log_path, deadline_s=30)
            yield instance
        finally:
            server.send_signal(signal.SIGINT)  # "fast" shutdown: roll back sessions, then exit
            server.wait(timeout=30)
    finally:
        shutil.rmtree(root)


def wait_until_accepting(instance: PostgresServer, server: subprocess.Popen, log_path: Path,
                         deadline_s: float) -> None:
    import psycopg

    deadline = time.monotonic() + deadline_s
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"postgres exited with {server.returncode}:\n{log_path.read_text()}")
        try:
            psycopg.connect(host=str(instance.socket_dir), port=instance.port, user="postgres",
                            dbname="postgres").close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not accepting connections after {deadline_s} s:\n"
                                   f"{log_path.read_text()}") from None
            time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server
