"""Helpers shared by the inventory-ledger tests: Hypothesis settings, a fake clock, a throwaway
PostgreSQL server, and the functions that run in worker processes."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

from allocator.inventory import InsufficientStock, Ledger, open_ledger

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}

# Named Hypothesis profiles; tests pick one explicitly instead of loading a profile globally,
# so that other test packages keep their own settings.
settings.register_profile(
    "inventory-ci",
    deadline=None,
    derandomize=True,  # as the project's "ci" profile: the same examples on every CI run
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "inventory-dev",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PROFILE = settings.get_profile("inventory-ci" if IN_CI else "inventory-dev")


def examples(ci: int, dev: int) -> int:
    """How many Hypothesis examples to run: ``ci`` under CI=true, ``dev`` otherwise."""
    return ci if IN_CI else dev


START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    """A clock that moves only when told to."""

    now: datetime = field(default=START)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# --- a throwaway PostgreSQL server -------------------------------------------------------------


def find_postgres_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, newest version first; None if absent."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
        reverse=True,
    )
    for candidate in candidates:
        folder = Path(candidate).parent
        if (folder / "pg_ctl").exists():
            return folder
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A PostgreSQL cluster in a temporary folder, reachable on 127.0.0.1:port."""

    bin_dir: Path
    root: Path
    port: int
    user: str = "ledger"
    uid: int | None = None
    gid: int | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "server.log"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        extra: dict[str, Any] = {}
        if self.uid is not None:
            extra = {"user": self.uid, "group": self.gid, "extra_groups": []}
        return subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
            **extra,
        )

    def initdb(self) -> None:
        initdb = self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        if initdb.returncode:
            raise RuntimeError(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -h 127.0.0.1 -k {self.root} -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off -c max_connections=80 -c shared_buffers=32MB"
        )
        started = self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )
        if started.returncode:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed:\n{started.stdout}\n{started.stderr}\n{log}")

    def stop(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def reusable_url(self) -> Callable[[], str]:
        """A factory of URLs to one schema, emptied at every call (its ledger must be closed)."""
        import psycopg

        url = self.fresh_url()
        created = False

        def next_url() -> str:
            nonlocal created
            if created:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(
                        "TRUNCATE locations, skus, totals, entries, holds, hold_lines, inbound,"
                        " idempotency RESTART IDENTITY"
                    )
            created = True
            return url

        return next_url

    def fresh_url(self) -> str:
        """A URL for a new, empty schema (so every test starts from an empty ledger)."""
        import psycopg

        schema = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return f"{self.url}?options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway server (as an unprivileged user when running as root); stop it after."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL binaries (initdb, pg_ctl) not found")
    as_root = os.geteuid() == 0
    # As root the server runs as another user, who must be able to reach the folder: /tmp is
    # world-searchable, a private TMPDIR may not be.
    root = Path(tempfile.mkdtemp(prefix="allocator-pg-", dir="/tmp" if as_root else None))
    uid = gid = None
    if as_root:
        for name in ("postgres", "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            uid, gid = entry.pw_uid, entry.pw_gid
            break
        else:
            raise RuntimeError("running as root and no unprivileged user (postgres, nobody) exists")
        os.chown(root, uid, gid)
    server = PostgresServer(bin_dir=bin_dir, root=root, port=free_port(), uid=uid, gid=gid)
    try:
        server.initdb()
        for attempt in range(3):  # another process may take the free port before the server
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                server.port = free_port()
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


# --- work done in other processes ---------------------------------------------------------------


def contend(url: str, worker: int, attempts: int, barrier: Any, results: Any) -> None:
    """Reserve one unit of the hot SKU ``attempts`` times; report (won, short, errors)."""
    won = short = 0
    errors: list[str] = []
    with open_ledger(url) as ledger:
        barrier.wait()
        for attempt in range(attempts):
            try:
                ledger.reserve(
                    f"order-{worker}-{attempt}", [("HOT", "L1", 1)], key=f"k-{worker}-{attempt}"
                )
                won += 1
            except InsufficientStock:
                short += 1
            except Exception as error:
                errors.append(f"{type(error).__name__}: {error}")
    results.put((worker, won, short, errors))


def criss_cross(url: str, worker: int, rounds: int, barrier: Any, results: Any) -> None:
    """Reserve two SKUs in opposite line orders (by worker parity), then ship or release."""
    errors: list[str] = []
    shipped = 0
    with open_ledger(url) as ledger:
        barrier.wait()
        for n in range(rounds):
            lines = [("A", "L1", 1), ("B", "L1", 1), ("A", "L2", 1)]
            if worker % 2:
                lines.reverse()
            order = f"o-{worker}-{n}"
            try:
                ledger.reserve(order, lines, key=f"{order}/r")
                if n % 2:
                    ledger.ship(order, [("B", "L1", 1), ("A", "L1", 1)], key=f"{order}/s")
                    ledger.release(order, key=f"{order}/c")
                    shipped += 1
                else:
                    ledger.release(order, key=f"{order}/c")
            except Exception as error:
                errors.append(f"{type(error).__name__}: {error}")
    results.put((worker, shipped, errors))


def scripted_call(ledger: Ledger, index: int) -> None:
    """Call number ``index`` of an endless, deterministic script in which every call succeeds.

    Blocks of six calls cycle through locations and SKUs: a receipt, a reservation, a partial
    shipment, a release, a restock of a return, and a transfer or a count adjustment.
    """
    block, step = divmod(index, 6)
    location, sku = f"L{block % 3}", f"S{block % 4}"
    order = f"o{block}"
    if step == 0:
        ledger.receive(location, sku, 5, key=f"{block}/receive")
    elif step == 1:
        ledger.reserve(order, [(sku, location, 3)], key=f"{block}/reserve")
    elif step == 2:
        ledger.ship(order, [(sku, location, 2)], key=f"{block}/ship")
    elif step == 3:
        ledger.release(order, key=f"{block}/release")
    elif step == 4:
        ledger.restock(order, [(sku, location, 1)], key=f"{block}/restock")
    elif block % 2:
        target = f"L{(block + 1) % 3}"
        ledger.receive(target, sku, 1, key=f"{block}/seed")
        ledger.transfer(sku, location, target, 1, key=f"{block}/transfer")
    else:
        ledger.adjust(location, sku, -1, reason="count", key=f"{block}/adjust")


def crash_worker(url: str, start: int, stop: int, ack_path: str) -> None:
    """Run script calls ``start..stop-1``, acknowledging each in ``ack_path`` once it returned."""
    fd = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        with open_ledger(url) as ledger:
            for index in range(start, stop):
                scripted_call(ledger, index)
                os.write(fd, f"{index}\n".encode())
    finally:
        os.close(fd)


def acknowledged(ack_path: str) -> int:
    """How many script calls were acknowledged (the next one to submit)."""
    try:
        text = Path(ack_path).read_text()
    except FileNotFoundError:
        return 0
    done = [int(line) for line in text.splitlines() if line.strip()]
    return max(done) + 1 if done else 0


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return False
