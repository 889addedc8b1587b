"""Benchmark of the Python SDK's `log()` path (issue 12's targets).

    BITACORA_BIN=target/release/bitacora sdks/python/.venv/bin/python sdks/python/bench/bench.py

Measures, against a `bitacora serve` it starts on a temporary store:
1. the caller's cost of `log()` (median and p99 over individually timed calls) with the server
   up, paced at 5,000 events/s so the queue never fills;
2. the same with the URL pointing at a blackholed port (a socket that listens but never
   accepts: requests hang until they time out), over the first 10,000 events (the queue
   absorbs them) and then over calls on a full queue (the drop path);
3. sustained throughput: events/s delivered (acknowledged by the server) from one process
   calling `log()` as fast as the queue accepts, with the queue's largest size sampled.
"""

from __future__ import annotations

import argparse
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

from bitacora import Bitacora

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
    """Times `count` log() calls one by one; with `rate`, paced to that many per second."""
    samples: list[int] = []
    clock = time.perf_counter_ns
    start = time.perf_counter()
    for i in range(count):
        t0 = clock()
        client.log("user.role_change", **EVENT)  # type: ignore[arg-type]
        samples.append(clock() - t0)
        if rate is not None and i % 50 == 49:
            ahead = start + (i + 1) / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
    return samples


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
        timed_calls(client, 2_000, 5_000)  # warm up: thread started, connection open
        client.flush(30)
        samples = timed_calls(client, args.calls, 5_000)
        assert client.flush(60)
        report("log(), server up, 5k/s", samples)
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

        # 3. sustained throughput
        fast = Bitacora(url=url, api_key=key)
        largest = 0
        total = args.throughput_events
        start = time.perf_counter()
        sent_before = 0
        i = 0
        while i < total:
            # Offer load as fast as the queue takes it: back off (briefly) only when the
            # queue is nearly full, so nothing is dropped and the sender is never starved.
            queued = len(fast._queue)
            largest = max(largest, queued)
            if queued > 9_000:
                time.sleep(0.001)
                continue
            for _ in range(100):
                fast.log("user.role_change", **EVENT)  # type: ignore[arg-type]
            i += 100
        assert fast.flush(120)
        elapsed = time.perf_counter() - start
        stats = fast.stats()
        print(
            f"throughput: {stats['sent'] - sent_before} events acknowledged in {elapsed:.2f} s "
            f"= {(stats['sent'] - sent_before) / elapsed:,.0f} events/s; largest queue "
            f"{largest}; stats {stats}"
        )
        fast.close()
    finally:
        proc.terminate()
        proc.wait(20)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
