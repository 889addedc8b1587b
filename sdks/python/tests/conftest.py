"""Test harness: a real `bitacora serve` per session, plus helpers to start more (for
restarts and capture), small TCP/HTTP middlemen, and throwaway PostgreSQL databases.

The binary comes from `BITACORA_BIN`; without it (or without PostgreSQL) the tests fail,
never skip: CI must not pass by testing nothing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

PG_ADMIN_URL = os.environ.get("BITACORA_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def bitacora_bin() -> str:
    path = os.environ.get("BITACORA_BIN")
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"BITACORA_BIN must name the bitacora binary (got {path!r})", pytrace=False)
    return path


@dataclass
class Server:
    """One `bitacora serve` process on its own store."""

    data: Path
    extra_args: list[str] = field(default_factory=list)
    listen: str = "127.0.0.1:0"
    proc: subprocess.Popen[str] | None = None
    url: str = ""
    admin_key: str = ""
    _log: Any = None

    def start(self) -> Server:
        self.data.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "BITACORA_LISTEN": self.listen, "RUST_LOG": "warn"}
        self._log = open(self.data.parent / f"{self.data.name}.stderr", "a")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [bitacora_bin(), "serve", "--data", str(self.data), *self.extra_args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"bitacora serve did not start: {line!r}; see {self._log.name}")
        self.url = line.split("listening on ", 1)[1].strip().rstrip("/")
        # Pin the port, so a restart comes back at the same address.
        self.listen = self.url.removeprefix("http://")
        # Keep reading stdout so the server never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        if not self.admin_key:
            key_file = self.data / "initial-admin-key"
            for _ in range(100):
                if key_file.exists() and key_file.read_text().strip():
                    break
                time.sleep(0.05)
            self.admin_key = key_file.read_text().strip()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [bitacora_bin(), *args, "--data", str(self.data)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout

    def create_key(self, scope: str, name: str) -> str:
        return self.cli("keys", "create", "--scope", scope, "--name", name).strip().splitlines()[-1]

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=10
        )

    def events(self, **params: Any) -> list[dict[str, Any]]:
        with self.http() as h:
            r = h.get("/v1/events", params={"limit": 1000, **params})
            r.raise_for_status()
            events: list[dict[str, Any]] = r.json()["events"]
            return events

    def event(self, event_id: str) -> dict[str, Any]:
        with self.http() as h:
            r = h.get(f"/v1/events/{event_id}")
            r.raise_for_status()
            body: dict[str, Any] = r.json()
            return body

    def wait_events(self, count: int, timeout: float = 15.0, **params: Any) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            events = self.events(**params)
            if len(events) >= count or time.monotonic() > deadline:
                return events
            time.sleep(0.1)


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="bitacora-sdk-py-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def server(tmp_root: Path) -> Iterator[Server]:
    s = Server(tmp_root / "main").start()
    yield s
    s.stop()


@pytest.fixture
def fresh_server(tmp_root: Path) -> Iterator[Server]:
    """A server of the test's own (for restarts and kills)."""
    s = Server(tmp_root / f"own-{secrets.token_hex(4)}").start()
    yield s
    s.stop(signal.SIGKILL)


def unique(prefix: str = "t") -> str:
    """A fresh action name, so each test finds its own events in the shared server."""
    return f"{prefix}.{secrets.token_hex(6)}"


# ---- middlemen ----


class LossyProxy:
    """A TCP proxy to `upstream` that forwards the first `drop` requests but loses their
    responses (closes the client's connection instead), as a network failure after the server
    acted would."""

    def __init__(self, upstream: str, drop: int = 1) -> None:
        host, port = upstream.removeprefix("http://").rsplit(":", 1)
        self.upstream = (host, int(port))
        self.drop = drop
        self.dropped = 0
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        up = socket.create_connection(self.upstream)
        lose = self.dropped < self.drop
        if lose:
            self.dropped += 1
        try:
            while True:
                r, _, _ = select.select([client, up], [], [], 30)
                if not r:
                    return
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is client:
                        up.sendall(data)
                    elif lose:
                        # The server answered: the request was processed. Lose the answer.
                        return
                    else:
                        client.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            up.close()

    def close(self) -> None:
        self._closed = True
        self.sock.close()


class FakeUpstream:
    """An HTTP server that answers the first requests from `script` (status, headers) and
    forwards the rest to the real server, recording when each request arrived."""

    def __init__(self, upstream: str, script: list[tuple[int, dict[str, str]]]) -> None:
        outer = self
        self.script = list(script)
        self.arrivals: list[float] = []
        self.upstream = upstream

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.arrivals.append(time.monotonic())
                if outer.script:
                    status, headers = outer.script.pop(0)
                    payload = b'{"error":{"code":"test","message":"scripted"}}'
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                fwd = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("authorization", "content-type")
                }
                r = httpx.request(
                    self.command, outer.upstream + self.path, content=body, headers=fwd, timeout=10
                )
                self.send_response(r.status_code)
                self.send_header("Content-Type", r.headers.get("content-type", "text/plain"))
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Blackhole:
    """A listening socket that never accepts: connections queue in the backlog and requests
    hang, as with a firewall that drops packets or a wedged server."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def middlemen() -> Iterator[Callable[[Any], Any]]:
    opened: list[Any] = []

    def track(m: Any) -> Any:
        opened.append(m)
        return m

    yield track
    for m in opened:
        with contextlib.suppress(Exception):
            m.close()


# ---- PostgreSQL ----


@dataclass
class Database:
    name: str
    url: str


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Database]:
    """A throwaway database `sdkpy_<random>`, dropped at the end of the session."""
    import psycopg

    name = f"sdkpy_{secrets.token_hex(5)}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True)
    except psycopg.OperationalError as e:
        pytest.fail(f"PostgreSQL is required at {PG_ADMIN_URL}: {e}", pytrace=False)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield Database(name, f"{base}/{name}")
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
