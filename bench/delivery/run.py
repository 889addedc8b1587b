#!/usr/bin/env python3
"""Delivery benchmarks (issue 17): stream catch-up rate, alert latency, ingest with 3 streams and
20 rules against ingest without them, in the same run, and the lag of a webhook stream and a
NATS JetStream stream under a sustained ingest rate. Prints medians; asserts nothing.

  BITACORA_BIN=target/release/bitacora python3 bench/delivery/run.py [--events N] [--samples N]
      [--backlog N] [--rate R --seconds S] [--only catch-up,catch-up-nats,alert,ingest,sustained]
      [--nats HOST:PORT] [--nats-prefix NAME] [--delivery KEY=VALUE]

The receiver is a local HTTP server in this process (it counts events; it does not verify
signatures, which the tests do). NATS is the machine's server with JetStream (127.0.0.1:4222,
or `--nats HOST:PORT`), spoken to with just enough of its protocol to create, read and delete a
stream of the run's own. Each server runs on a fresh temporary data folder.
"""

import argparse
import bisect
import http.client
import json
import os
import socket
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


class CountingReceiver(BaseHTTPRequestHandler):
    """The sustained benchmark's webhook receiver, in a process of its own (`--receiver`):
    in the driving process it would share the GIL with the paced client, and its own delay
    would throttle the stream it measures. `GET /_count` answers the events received."""

    protocol_version = "HTTP/1.1"
    count = 0
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with CountingReceiver.lock:
            CountingReceiver.count += body.count(b'"leaf_hash"')
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        with CountingReceiver.lock:
            out = str(CountingReceiver.count).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def serve_counting_receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), CountingReceiver)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


class ReceiverProcess:
    """This script run as `--receiver`: a counting webhook receiver in its own process."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--receiver"],
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def count(self):
        self.conn.request("GET", "/_count")
        return int(self.conn.getresponse().read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def start_receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


# `[delivery]` settings every server of the run gets besides `allow_private_destinations`
# (`--delivery KEY=VALUE`, e.g. `max_batch=2000`).
DELIVERY_SETTINGS = []

# What the JetStream stream's name and subject begin with (`--nats-prefix`): on a shared NATS
# server, each user of it keeps to names of its own.
NATS_PREFIX = "bitacora_bench"


class Server:
    def __init__(self, binary):
        self.dir = tempfile.TemporaryDirectory()
        config = os.path.join(self.dir.name, "bitacora.toml")
        with open(config, "w") as f:
            f.write("[store]\nsynchronous = \"normal\"\n[delivery]\nallow_private_destinations = true\n")
            f.writelines(f"{setting}\n" for setting in DELIVERY_SETTINGS)
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


def events(n, prefix, action="bench.event", start=0):
    return [{"id": f"{prefix}-{i}", "action": action, "actor": {"id": f"u{i % 50}"},
             "context": {"ip": f"10.0.{i % 200}.1"}, "description": "benchmark event"}
            for i in range(start, start + n)]


def ingest(server, n, threads=4, batch=500):
    """Events/s of n events sent by `threads` connections in batches (each batch made as it
    is sent, so a million events do not sit in memory)."""
    per = n // threads

    def work(t):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        prefix = f"t{t}-{time.time_ns()}"
        for i in range(0, per, batch):
            server.request("POST", "/v1/events/batch", events(min(batch, per - i), prefix, start=i),
                           conn)

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


def catch_up_nats(binary, n, nats_address):
    """As `catch_up`, to a NATS JetStream stream of the run's own: the time from the stream's
    creation until JetStream holds all n events (it drops redeliveries by message id)."""
    nats = Nats(nats_address)
    name = f"{NATS_PREFIX}_{os.getpid()}_{time.time_ns()}"
    subject = f"{NATS_PREFIX}.{name}"
    nats.request(f"$JS.API.STREAM.CREATE.{name}", {"name": name, "subjects": [subject],
                                                   "storage": "file"})
    s = Server(binary)
    try:
        ingest(s, n)
        start = time.monotonic()
        s.request("POST", "/v1/destinations", {"name": "nats", "kind": "nats", "stream": True,
                                               "url": f"nats://{nats_address}/{subject}"})
        while nats.request(f"$JS.API.STREAM.INFO.{name}")["state"]["messages"] < n:
            time.sleep(0.05)
        return n / (time.monotonic() - start)
    finally:
        s.stop()
        try:
            nats.request(f"$JS.API.STREAM.DELETE.{name}")
        except Exception as e:  # noqa: BLE001 - report, do not mask the run's own error
            print(f"could not delete the JetStream stream {name}: {e}", file=sys.stderr)


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


class Nats:
    """Just enough of the NATS client protocol (stdlib sockets) to manage a JetStream stream:
    requests on the `$JS.API.*` subjects, answered on one inbox. One thread at a time."""

    def __init__(self, address):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.buf = b""
        self._line()  # INFO
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,'
                          b'"no_responders":true}\r\nSUB _INBOX.bench 1\r\nPING\r\n')
        while self._line() != b"PONG":
            pass

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("NATS closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read(self, n):
        while len(self.buf) < n + 2:
            self.buf += self.sock.recv(65536)
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def request(self, subject, payload=None):
        data = json.dumps(payload).encode() if payload is not None else b""
        self.sock.sendall(b"PUB %s _INBOX.bench %d\r\n%s\r\n" % (subject.encode(), len(data), data))
        while True:
            line = self._line()
            if line == b"PING":
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise RuntimeError(line.decode())
            elif line.startswith(b"MSG "):
                return json.loads(self._read(int(line.split()[-1])))
            elif line.startswith(b"HMSG "):
                parts = line.split()
                data = self._read(int(parts[-1]))
                body = data[int(parts[-2]):]
                if not body:  # a status only: 503 "no responders" when JetStream is off
                    raise RuntimeError(f"JetStream did not answer {subject}: {data!r}")
                return json.loads(body)


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))] if values else 0.0


def sustained(binary, rate, seconds, nats_address, batch=500, threads=4):
    """Paced ingest at `rate` events/s for `seconds` with a webhook stream and a NATS
    JetStream stream; every 250 ms, how far each receiver is behind the acknowledged head, in
    events and in seconds (the age of the oldest acknowledged event it does not have yet)."""
    nats = Nats(nats_address)
    name = f"{NATS_PREFIX}_{os.getpid()}_{time.time_ns()}"
    subject = f"{NATS_PREFIX}.{name}"
    nats.request(f"$JS.API.STREAM.CREATE.{name}", {"name": name, "subjects": [subject],
                                                   "storage": "file"})
    s = Server(binary)
    receiver = ReceiverProcess()
    try:
        s.request("POST", "/v1/destinations", {"name": "webhook", "kind": "webhook", "stream": True,
                                               "url": f"http://127.0.0.1:{receiver.port}/sustained"})
        s.request("POST", "/v1/destinations", {"name": "nats", "kind": "nats", "stream": True,
                                               "url": f"nats://{nats_address}/{subject}"})
        time.sleep(2)  # the supervisor starts the workers (it reloads every second)
        acks_t, acks_n = [], []  # when the acknowledged count reached each value
        state = {"acked": 0, "next": 0, "done": False}
        total_batches = int(rate * seconds) // batch
        start = time.monotonic() + 0.1

        def work(t):
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
            while True:
                with LOCK:
                    k = state["next"]
                    state["next"] += 1
                if k >= total_batches:
                    return
                due = start + k * batch / rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                s.request("POST", "/v1/events/batch", events(batch, f"t{t}-{k}"), conn)
                now = time.monotonic()
                with LOCK:
                    state["acked"] += batch
                    acks_t.append(now)
                    acks_n.append(state["acked"])

        samples = []  # (t, acked, webhook events, nats messages)

        def sample():
            while True:
                with LOCK:
                    acked, done = state["acked"], state["done"]
                hook = receiver.count()
                info = nats.request(f"$JS.API.STREAM.INFO.{name}")
                samples.append((time.monotonic(), acked, hook, info["state"]["messages"]))
                if done and hook >= acked and info["state"]["messages"] >= acked:
                    return
                time.sleep(0.25)

        sampler = threading.Thread(target=sample)
        sampler.start()
        ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        ended = time.monotonic()
        # Over the acknowledgements themselves (from the first to the last).
        achieved = (acks_n[-1] - acks_n[0]) / max(acks_t[-1] - acks_t[0], 1e-9)
        with LOCK:
            state["done"] = True
        sampler.join(120)

        def lags(column):
            events_behind, seconds_behind = [], []
            for t, acked, *got in samples:
                if t > ended:  # the drain after the last batch is reported on its own
                    break
                have = got[column]
                events_behind.append(max(0, acked - have))
                # The oldest acknowledged event the receiver lacks: the (have+1)-th ack.
                i = bisect.bisect_left(acks_n, have + 1)
                seconds_behind.append(t - acks_t[i] if have < acked and i < len(acks_t) else 0.0)
            drain = next((t - ended for t, acked, *got in samples
                          if t >= ended and got[column] >= acked), float("nan"))
            return events_behind, seconds_behind, drain

        return achieved, lags(0), lags(1)
    finally:
        s.stop()
        receiver.stop()
        try:
            nats.request(f"$JS.API.STREAM.DELETE.{name}")
        except Exception as e:  # noqa: BLE001 - report, do not mask the run's own error
            print(f"could not delete the JetStream stream {name}: {e}", file=sys.stderr)


def main():
    if sys.argv[1:] == ["--receiver"]:
        return serve_counting_receiver()
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=20000)
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--backlog", type=int, default=None,
                   help="events of the catch-up backlog (default: --events)")
    p.add_argument("--rate", type=int, default=20000, help="sustained ingest rate, events/s")
    p.add_argument("--seconds", type=float, default=60, help="sustained ingest duration")
    p.add_argument("--nats", default="127.0.0.1:4222")
    p.add_argument("--nats-prefix", default="bitacora_bench",
                   help="what the run's JetStream stream name and subject begin with")
    p.add_argument("--only", default="catch-up,alert,ingest,sustained",
                   help="comma-separated: catch-up, catch-up-nats, alert, ingest, sustained")
    p.add_argument("--delivery", action="append", default=[], metavar="KEY=VALUE",
                   help="a [delivery] setting for every server (TOML value), repeatable")
    a = p.parse_args()
    DELIVERY_SETTINGS.extend(a.delivery)
    globals()["NATS_PREFIX"] = a.nats_prefix
    only = set(a.only.split(","))
    binary = os.environ.get("BITACORA_BIN", "target/release/bitacora")
    port = start_receiver()
    if "catch-up" in only:
        backlog = a.backlog or a.events
        rates = [catch_up(binary, backlog, port) for _ in range(a.runs)]
        print(f"catch-up of {backlog} events to a local webhook: median {statistics.median(rates):,.0f} events/s "
              f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})", flush=True)
    if "catch-up-nats" in only:
        backlog = a.backlog or a.events
        rates = [catch_up_nats(binary, backlog, a.nats) for _ in range(a.runs)]
        print(f"catch-up of {backlog} events to NATS JetStream: median {statistics.median(rates):,.0f} events/s "
              f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})", flush=True)
    if "alert" in only:
        p50, p95 = alert_latency(binary, a.samples, port)
        print(f"alert latency, ack -> receiver ({a.samples} samples): p50 {p50 * 1000:.0f} ms, "
              f"p95 {p95 * 1000:.0f} ms", flush=True)
    if "ingest" in only:
        base, loaded = [], []
        for _ in range(a.runs):  # alternated, so drift in the machine's load hits both
            base.append(ingest_with_delivery(binary, a.events, port, False))
            loaded.append(ingest_with_delivery(binary, a.events, port, True))
        b, l = statistics.median(base), statistics.median(loaded)
        print(f"ingest {a.events} events (4 connections, batches of 500): without delivery median {b:,.0f}/s, "
              f"with 3 streams + 20 rules {l:,.0f}/s, ratio {l / b:.2f} "
              f"(runs: {[round(x) for x in base]} vs {[round(x) for x in loaded]})", flush=True)
    if "sustained" in only:
        for run in range(a.runs):
            achieved, hook, nats = sustained(binary, a.rate, a.seconds, a.nats)
            print(f"sustained run {run + 1}: {a.rate:,} events/s asked for {a.seconds:g} s, "
                  f"{achieved:,.0f}/s acknowledged", flush=True)
            for label, (ev, sec, drain) in (("webhook", hook), ("NATS JetStream", nats)):
                print(f"  {label} behind the head ({len(sec)} samples every 250 ms): "
                      f"events p50 {percentile(ev, 0.5):,.0f} p95 {percentile(ev, 0.95):,.0f} "
                      f"max {max(ev, default=0):,.0f}; seconds p50 {percentile(sec, 0.5):.2f} "
                      f"p95 {percentile(sec, 0.95):.2f} max {max(sec, default=0):.2f}; "
                      f"caught up {drain:.2f} s after the last acknowledgement", flush=True)


if __name__ == "__main__":
    sys.exit(main())
