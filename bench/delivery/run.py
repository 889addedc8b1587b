#!/usr/bin/env python3
"""Delivery benchmarks (issue 17): stream catch-up rate, alert latency, ingest with 3 streams and
20 rules against ingest without them, in the same run. Prints medians; asserts nothing.

  BITACORA_BIN=target/release/bitacora python3 bench/delivery/run.py [--events N] [--samples N]

The receiver is a local HTTP server in this process (it counts events; it does not verify
signatures, which the tests do). Each server runs on a fresh temporary data folder.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
RECEIVED = {"events": 0, "first": None, "last": None, "alerts": {}}


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        now = time.monotonic()
        n = body.count(b'"leaf_hash"')
        alerts = {}
        if b"bitacora.alert.fired" in body:
            for e in json.loads(body)["events"]:
                if e.get("action") == "bitacora.alert.fired":
                    alerts[e["metadata"]["seqs"][0]] = now
        with LOCK:
            RECEIVED["events"] += n
            RECEIVED["first"] = RECEIVED["first"] or now
            RECEIVED["last"] = now
            RECEIVED["alerts"].update(alerts)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


def start_receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


class Server:
    def __init__(self, binary):
        self.dir = tempfile.TemporaryDirectory()
        config = os.path.join(self.dir.name, "bitacora.toml")
        with open(config, "w") as f:
            f.write("[store]\nsynchronous = \"normal\"\n[delivery]\nallow_private_destinations = true\n")
        data = os.path.join(self.dir.name, "data")
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--data", data, "--config", config],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("BITACORA_")}
            | {"BITACORA_LOG_LEVEL": "warn"})
        for line in self.proc.stdout:
            if line.startswith("listening on http://"):
                host, port = line.strip()[len("listening on http://"):].rsplit(":", 1)
                self.port = int(port)
                break
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        key_file = os.path.join(data, "initial-admin-key")
        while not os.path.exists(key_file):
            time.sleep(0.05)
        self.key = open(key_file).read().strip()

    def request(self, method, path, body=None, conn=None):
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        data = json.dumps(body).encode() if body is not None else None
        c.request(method, path, body=data, headers={"Authorization": f"Bearer {self.key}",
                                                     "Content-Type": "application/json"})
        r = c.getresponse()
        out = r.read()
        assert r.status < 300, (r.status, out[:300])
        return json.loads(out) if out else None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.dir.cleanup()


def events(n, prefix, action="bench.event"):
    return [{"id": f"{prefix}-{i}", "action": action, "actor": {"id": f"u{i % 50}"},
             "context": {"ip": f"10.0.{i % 200}.1"}, "description": "benchmark event"}
            for i in range(n)]


def ingest(server, n, threads=4, batch=500):
    """Events/s of n events sent by `threads` connections in batches."""
    per = n // threads

    def work(t):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        evs = events(per, f"t{t}-{time.time_ns()}")
        for i in range(0, per, batch):
            server.request("POST", "/v1/events/batch", evs[i:i + batch], conn)

    start = time.monotonic()
    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return per * threads / (time.monotonic() - start)


def catch_up(binary, n, port):
    s = Server(binary)
    try:
        ingest(s, n)
        with LOCK:
            RECEIVED.update(events=0, first=None, last=None)
        start = time.monotonic()
        s.request("POST", "/v1/destinations", {"name": "bench", "kind": "webhook", "stream": True,
                                               "url": f"http://127.0.0.1:{port}/"})
        while True:
            with LOCK:
                got = RECEIVED["events"]
            if got >= n:
                break
            time.sleep(0.02)
        return n / (time.monotonic() - start)
    finally:
        s.stop()


def alert_latency(binary, samples, port):
    s = Server(binary)
    try:
        d = s.request("POST", "/v1/destinations", {"name": "alerts", "kind": "webhook",
                                                   "url": f"http://127.0.0.1:{port}/"})
        s.request("POST", "/v1/alert-rules", {"name": "bench", "match": {"action": "bench.alert"},
                                              "destinations": [d["id"]]})
        time.sleep(1.5)
        latencies = []
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        for i in range(samples):
            ack = s.request("POST", "/v1/events", {"action": "bench.alert"}, conn)
            acked = time.monotonic()
            while True:
                with LOCK:
                    at = RECEIVED["alerts"].get(ack["seq"])
                if at is not None:
                    latencies.append(at - acked)
                    break
                time.sleep(0.002)
            time.sleep(0.05)
        latencies.sort()
        return statistics.median(latencies), latencies[int(0.95 * (len(latencies) - 1))]
    finally:
        s.stop()


def ingest_with_delivery(binary, n, port, with_delivery):
    s = Server(binary)
    try:
        if with_delivery:
            ids = []
            for i in range(3):
                d = s.request("POST", "/v1/destinations", {
                    "name": f"stream {i}", "kind": "webhook", "stream": True,
                    "format": "ocsf" if i == 2 else "bitacora",
                    "url": f"http://127.0.0.1:{port}/s{i}"})
                ids.append(d["id"])
            for i in range(20):
                s.request("POST", "/v1/alert-rules", {
                    "name": f"rule {i}", "match": {"action": "bench.*", "actor_id": f"u{i}"},
                    "threshold": {"count": 5, "window": "10m", "group_by": "context.ip"},
                    "destinations": [ids[i % 3]]})
            time.sleep(1.5)
        return ingest(s, n)
    finally:
        s.stop()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=20000)
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    binary = os.environ.get("BITACORA_BIN", "target/release/bitacora")
    port = start_receiver()
    rates = [catch_up(binary, a.events, port) for _ in range(a.runs)]
    print(f"catch-up of {a.events} events to a local webhook: median {statistics.median(rates):,.0f} events/s "
          f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})")
    p50, p95 = alert_latency(binary, a.samples, port)
    print(f"alert latency, ack -> receiver ({a.samples} samples): p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms")
    base, loaded = [], []
    for _ in range(a.runs):  # alternated, so drift in the machine's load hits both
        base.append(ingest_with_delivery(binary, a.events, port, False))
        loaded.append(ingest_with_delivery(binary, a.events, port, True))
    b, l = statistics.median(base), statistics.median(loaded)
    print(f"ingest {a.events} events (4 connections, batches of 500): without delivery median {b:,.0f}/s, "
          f"with 3 streams + 20 rules {l:,.0f}/s, ratio {l / b:.2f} "
          f"(runs: {[round(x) for x in base]} vs {[round(x) for x in loaded]})")


if __name__ == "__main__":
    sys.exit(main())
