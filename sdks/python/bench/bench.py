"""Benchmark of the Python SDK's `log()` path (issue 12's targets).

    BITACORA_BIN=target/release/bitacora sdks/python/.venv/bin/python sdks/python/bench/bench.py

Measures, against a `bitacora serve` it starts on a temporary store:
1. the caller's cost of `log()` (median and p99 over individually timed calls) with the server
   up, paced at 2,000 events/s (bursts of 200, then a sleep) so the queue never fills, and
   separately calls made each after 10 ms asleep (cold caches);
2. the same with the URL pointing at a blackholed port (a socket that listens but never
   accepts: requests hang until they time out), over the first 10,000 events (the queue
   absorbs them) and then over calls on a full queue (the drop path);
3. sustained throughput: events/s delivered (acknowledged by the server) from one process
   calling `log()` as fast as the queue accepts, with the queue's largest size sampled.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import select
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bitacora import Bitacora
from bitacora._ids import uuid7

EVENT = {
    "severity": "critical",
    "target": {"type": "user", "id": "456", "name": "Juan Pérez"},
    "changes": [{"field": "role", "old": "user", "new": "admin"}],
    "metadata": {"reason": "manual request"},
}


def start_server(binary: str, data: Path) -> tuple[subprocess.Popen[str], str, str]:
    env = {**os.environ, "BITACORA_LISTEN": "127.0.0.1:0", "RUST_LOG": "warn"}
    proc = subprocess.Popen(
        [binary, "serve", "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"bitacora serve did not start: {line!r}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    url = line.split("listening on ", 1)[1].strip()
    key_file = data / "initial-admin-key"
    for _ in range(100):
        if key_file.exists() and key_file.read_text().strip():
            break
        time.sleep(0.05)
    return proc, url, key_file.read_text().strip()


def percentile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def timed_calls(client: Bitacora, count: int, rate: float | None) -> list[int]:
    """Times `count` log() calls one by one; with `rate`, paced to that many per second in
    bursts of 200 with sleeps between (an app doing I/O between requests). The first call
    after each sleep runs on caches that other processes evicted: `cold_calls` measures such
    calls on their own."""
    samples: list[int] = []
    clock = time.perf_counter_ns
    start = time.perf_counter()
    for i in range(count):
        t0 = clock()
        client.log("user.role_change", **EVENT)  # type: ignore[arg-type]
        samples.append(clock() - t0)
        if rate is not None and i % 200 == 199:
            ahead = start + (i + 1) / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
    return samples


def cold_calls(client: Bitacora, count: int) -> list[int]:
    """log() calls each made after 10 ms asleep, as in an app that logs now and then."""
    samples: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(count):
        time.sleep(0.01)
        t0 = clock()
        client.log("user.role_change", **EVENT)  # type: ignore[arg-type]
        samples.append(clock() - t0)
    return samples


def cold_dumps(count: int) -> list[int]:
    """The cold-call baseline: serializing the same event once, each after 10 ms asleep."""
    event = {"action": "user.role_change", **EVENT}
    samples: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(count):
        time.sleep(0.01)
        t0 = clock()
        json.dumps(event)
        samples.append(clock() - t0)
    return samples


def noise_floor(count: int, rate: float) -> list[int]:
    """The same timing loop around a trivial call (a dict appended to a deque): its p99 is
    what the machine's scheduling and the timer add to any call, the floor under log()'s."""
    q: collections.deque[dict[str, str]] = collections.deque()
    samples: list[int] = []
    clock = time.perf_counter_ns
    start = time.perf_counter()
    for i in range(count):
        t0 = clock()
        q.append({"action": "user.role_change"})
        samples.append(clock() - t0)
        if i % 200 == 199:
            ahead = start + (i + 1) / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
    return samples


def raw_batches(url: str, key: str, batches: int) -> float:
    """Events/s the server acknowledges from one client posting pre-serialized batches of 500
    back to back, without the SDK: the ceiling any client in this process could reach."""
    bodies = [
        json.dumps([{"id": uuid7(), "action": "user.role_change", **EVENT} for _ in range(500)])
        for _ in range(batches)
    ]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(timeout=60) as http:
        start = time.perf_counter()
        for body in bodies:
            http.post(f"{url}/v1/events/batch", content=body, headers=headers).raise_for_status()
        return batches * 500 / (time.perf_counter() - start)


def mock_ceiling(total: int) -> float:
    """Events/s through log() and the sender when the server answers instantly (an in-process
    mock transport): the SDK's own ceiling, without the server's cost."""

    item = b'{"id":"x","seq":0,"leaf_hash":"' + b"0" * 64 + b'","duplicate":false}'
    answers: dict[int, bytes] = {}

    def ack(request: httpx.Request) -> httpx.Response:
        # As cheap as possible, so the figure is the SDK's cost alone: every generated event
        # has exactly one "action" member, and the sender reads only the results' count.
        n = request.content.count(b'"action":')
        if n not in answers:
            answers[n] = b'{"results":[' + b",".join([item] * n) + b"]}"
        return httpx.Response(200, content=answers[n], headers={"content-type": "application/json"})

    client = Bitacora(url="http://mock", api_key="k", transport=httpx.MockTransport(ack))
    start = time.perf_counter()
    offer(client, total)
    assert client.flush(120)
    rate = client.stats()["sent"] / (time.perf_counter() - start)
    client.close()
    return rate


def offer(client: Bitacora, total: int) -> int:
    """Logs `total` events as fast as the queue takes them, backing off (briefly) only when it
    is nearly full, so nothing is dropped and the sender is never starved. Returns the largest
    queue length seen."""
    largest = 0
    i = 0
    while i < total:
        queued = len(client._queue)
        largest = max(largest, queued)
        if queued > 9_000:
            time.sleep(0.001)
            continue
        for _ in range(100):
            client.log("user.role_change", **EVENT)  # type: ignore[arg-type]
        i += 100
    return largest


def report(name: str, samples: list[int]) -> None:
    print(
        f"{name}: n={len(samples)} median={statistics.median(samples) / 1000:.2f} us "
        f"p99={percentile(samples, 0.99):.2f} us max={max(samples) / 1000:.0f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.environ.get("BITACORA_BIN"))
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--throughput-events", type=int, default=200_000)
    args = parser.parse_args()
    if not args.bin:
        raise SystemExit("give --bin or BITACORA_BIN")
    root = Path(tempfile.mkdtemp(prefix="bitacora-sdk-bench-"))
    proc, url, key = start_server(args.bin, root / "data")
    try:
        # 1. server up
        client = Bitacora(url=url, api_key=key)
        # 2,000/s: under what a debug build on a busy 2-core machine ingests (see the raw
        # baseline), so the figure is the queueing path, not the cheaper drop path.
        timed_calls(client, 2_000, 2_000)  # warm up: thread started, connection open
        client.flush(30)
        samples = timed_calls(client, args.calls, 2_000)
        assert client.flush(60)
        report("log(), server up, 2k/s", samples)
        report("log(), server up, each call after 10 ms asleep", cold_calls(client, 500))
        report("  baseline, json.dumps of the same event after 10 ms asleep", cold_dumps(500))
        assert client.flush(60)
        print(f"  stats {client.stats()}")
        client.close()

        # 2. blackholed port
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(1)
        dead = Bitacora(url=f"http://127.0.0.1:{hole.getsockname()[1]}", api_key=key, timeout=30.0)
        samples = timed_calls(dead, 10_000, 5_000)
        report("log(), blackholed, queue filling", samples)
        samples = timed_calls(dead, args.calls, 5_000)
        report("log(), blackholed, queue full (drop path)", samples)
        stats = dead.stats()
        print(f"  stats {stats} (bound: 10000 waiting + one batch of 500 in flight)")
        assert stats["queued"] <= 10_500
        dead.close(0.1)
        hole.close()

        # 3. sustained throughput, with the same-run ceilings
        fast = Bitacora(url=url, api_key=key)
        total = args.throughput_events
        start = time.perf_counter()
        largest = offer(fast, total)
        assert fast.flush(120)
        elapsed = time.perf_counter() - start
        stats = fast.stats()
        print(
            f"throughput: {stats['sent']} events acknowledged in {elapsed:.2f} s "
            f"= {stats['sent'] / elapsed:,.0f} events/s; largest queue {largest}; stats {stats}"
        )
        fast.close()
        print(
            f"  baseline, raw batches of 500 without the SDK: "
            f"{raw_batches(url, key, 40):,.0f} events/s"
        )
        print(
            f"  baseline, SDK against an instant mock server: {mock_ceiling(total):,.0f} events/s"
        )
        report("  noise floor (deque.append timed the same way)", noise_floor(args.calls, 5_000))
    finally:
        proc.terminate()
        proc.wait(20)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
