// Benchmark of the SDK's promises (issue 13, recorded in BENCHMARKS.md):
//   1. `log()` costs the caller <= 10 µs median — with the server up, down (connection
//      refused) and hanging (accepts, never answers);
//   2. one Node process pushes >= 20,000 events/s through `log()` into a local server;
//   3. 0 events lost across a server restart with 30 s of downtime (within the queue).
//
//   npm run build && BITACORA_BIN=/abs/path/bitacora node bench/bench.mjs \
//       [--samples 50000] [--events 20000] [--null-events 200000] [--downtime 30] [--throughput-only]
//
// Method. Caller cost: each `log()` call is timed alone with `process.hrtime.bigint()` (its own
// overhead, ~40-80 ns, is included, so figures are slightly pessimistic); calls come in bursts of
// 1,000 with a macrotask between bursts, as requests in a server would, so the sender runs.
// Throughput: events are logged in bursts of 1,000 with a macrotask between bursts, pausing
// while more than 8,000 wait (never dropping); the rate is events / time from the first
// `log()` to `flush()` resolving (every event acknowledged). It is measured into the real
// server, and into a null acknowledger (another Node process answering each batch as the server
// does, storing nothing) to show the SDK's own ceiling; the SDK process's CPU time per event
// is reported too, since wall-clock rates on a shared machine depend on the neighbours.

import { spawn } from "node:child_process";
import { once } from "node:events";
import net from "node:net";
import { setImmediate as tick } from "node:timers/promises";

import { Bitacora } from "../dist/esm/index.js";
import { closedPort, createKey, startServer } from "../test/helpers.mjs";

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(name);
  return i < 0 ? dflt : Number(args[i + 1]);
};
const TOTAL = arg("--events", 20_000);
const NULL_TOTAL = arg("--null-events", 200_000);
const ONLY = args.includes("--throughput-only");
const DOWNTIME = arg("--downtime", 30);
const SAMPLES = arg("--samples", 50_000);

function event(i) {
  return {
    action: "user.role_change",
    severity: "critical",
    target: { type: "user", id: String(i), name: "Juan Pérez" },
    changes: [{ field: "role", label: "Rol", old: "user", new: "admin" }],
    description: "Rol cambiado de user a admin",
    actor: { id: "admin_789", name: "Admin User", email: "admin@example.com" },
    metadata: { source: "admin_panel", previousRole: "user", newRole: "admin" },
  };
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function callerCost(label, client) {
  const samples = new Float64Array(SAMPLES);
  // Warm-up: JIT, id pool, first timers.
  for (let i = 0; i < 2000; i++) client.log(event(i));
  await tick();
  for (let done = 0; done < SAMPLES; ) {
    // With the server up, pace the bursts to what it absorbs: a full queue would drop, and the
    // drop path (cheaper) is not what this measures. With it down the queue holds every sample.
    while (client.stats().queued > 8000 && client.stats().sent + client.stats().failed < done) {
      await new Promise((r) => setTimeout(r, 1));
      if (label.includes("down") || label.includes("hanging")) break;
    }
    const burst = Math.min(1000, SAMPLES - done);
    for (let j = 0; j < burst; j++) {
      const ev = event(done);
      const t0 = process.hrtime.bigint();
      client.log(ev);
      samples[done++] = Number(process.hrtime.bigint() - t0) / 1000;
    }
    await tick();
  }
  samples.sort();
  const s = client.stats();
  const row = {
    scenario: label,
    median_us: +percentile(samples, 50).toFixed(2),
    p99_us: +percentile(samples, 99).toFixed(2),
    max_us: +samples[samples.length - 1].toFixed(1),
    dropped: s.dropped,
  };
  console.log(JSON.stringify(row));
  return row;
}

async function throughput(label, url, key, total) {
  const lat = [];
  const traced = async (u, o) => {
    const t = Date.now();
    try {
      return await fetch(u, o);
    } finally {
      lat.push(Date.now() - t);
    }
  };
  const tp = new Bitacora({ url, apiKey: key, exitFlushTimeout: 0, onError: () => {}, fetch: process.env.BENCH_TRACE ? traced : undefined });
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < total; ) {
    while (tp.stats().queued > 8000) await new Promise((r) => setTimeout(r, 1));
    const burst = Math.min(1000, total - i);
    for (let j = 0; j < burst; j++) tp.log(event(i++));
    await tick();
  }
  const flushed = await tp.flush(600_000);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (process.env.BENCH_TRACE) console.error("request latencies (ms):", lat.join(" "));
  const s = tp.stats();
  // CPU time of this process (the application's, all of the SDK's work included): on a shared
  // machine wall-clock rates depend on the neighbours, CPU per event does not.
  const cpu = process.cpuUsage(cpu0);
  const cpuUsPerEvent = (cpu.user + cpu.system) / total;
  const row = {
    scenario: label,
    events: total,
    seconds: +seconds.toFixed(2),
    events_per_s: Math.round(s.sent / seconds),
    sdk_cpu_us_per_event: +cpuUsPerEvent.toFixed(2),
    events_per_sdk_cpu_s: Math.round(1e6 / cpuUsPerEvent),
    flushed,
    ...s,
  };
  console.log(JSON.stringify(row));
  await tp.shutdown(1000);
  return row;
}

/**
 * 3. No loss across a restart: log at `rate` events/s, stop the server (SIGTERM) after 5 s, keep
 * logging through `downtime` seconds of outage (within the queue), start it again on the same
 * port and store, flush, and count what the store holds.
 */
async function restartDrill(downtime, rate = 200) {
  const first = await startServer();
  const key = createKey(first, "ingest");
  const action = `bench.restart_${Date.now()}`;
  const b = new Bitacora({ url: first.url, apiKey: key, exitFlushTimeout: 0, maxRetryDelay: 2000, onError: () => {} });
  let logged = 0;
  const logFor = async (seconds) => {
    const end = Date.now() + seconds * 1000;
    while (Date.now() < end) {
      for (let i = 0; i < rate / 10; i++, logged++) b.log({ ...event(logged), action });
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await logFor(5);
  await first.stop();
  await logFor(downtime);
  const again = await startServer({ dataDir: first.dataDir, listen: `127.0.0.1:${first.port}` });
  try {
    await logFor(2);
    const flushed = await b.flush(120_000);
    let stored = 0;
    for (let cursor; ; ) {
      const q = new URLSearchParams({ action, limit: "1000", ...(cursor ? { cursor } : {}) });
      const page = await (await fetch(`${again.url}/v1/events?${q}`, { headers: { authorization: `Bearer ${again.adminKey}` } })).json();
      stored += page.events.length;
      if (!page.next_cursor) break;
      cursor = page.next_cursor;
    }
    const row = { scenario: `restart with ${downtime} s of downtime`, logged, stored, lost: logged - stored, flushed, ...b.stats() };
    console.log(JSON.stringify(row));
    await b.shutdown(1000);
    return row;
  } finally {
    await again.stop();
    again.cleanup();
  }
}

/** A child process that acknowledges every batch like `POST /v1/events/batch` does, storing nothing. */
async function startNullServer() {
  const code = `
    const http = require("node:http");
    let seq = 0;
    const s = http.createServer((req, res) => {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        const events = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        const results = events.map((e) => ({ id: e.id, seq: seq++, leaf_hash: "0".repeat(64), duplicate: false }));
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ results }));
      });
    });
    s.listen(0, "127.0.0.1", () => console.log(s.address().port));
  `;
  const proc = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  const [line] = await once(proc.stdout, "data");
  return { url: `http://127.0.0.1:${String(line).trim()}`, proc };
}

async function main() {
  const server = await startServer();
  const key = createKey(server, "ingest");
  const rows = [];
  try {
    const quiet = { exitFlushTimeout: 0, onError: () => {} };

    if (!ONLY) {
    // 1a. server up
    const up = new Bitacora({ url: server.url, apiKey: key, ...quiet });
    rows.push(await callerCost("log() caller cost, server up", up));
    await up.shutdown(30_000);

    // 1b. server down: connection refused. The queue is sized to hold every sample, so this
    // measures queueing (the drop path is cheaper still).
    const port = await closedPort();
    const down = new Bitacora({ url: `http://127.0.0.1:${port}`, apiKey: key, maxQueue: SAMPLES + 5000, ...quiet });
    rows.push(await callerCost("log() caller cost, server down (refused)", down));
    await down.shutdown(10);

    // 1c. network hangs: a listener that accepts and never answers.
    const sockets = [];
    const hang = net.createServer((s) => sockets.push(s));
    hang.listen(0, "127.0.0.1");
    await once(hang, "listening");
    const hung = new Bitacora({ url: `http://127.0.0.1:${hang.address().port}`, apiKey: key, maxQueue: SAMPLES + 5000, ...quiet });
    rows.push(await callerCost("log() caller cost, server hanging", hung));
    await hung.shutdown(10);
    sockets.forEach((s) => s.destroy());
    hang.close();
    }

    // 2. throughput into the local server, then into a null acknowledger (a separate Node
    // process answering every batch as the server would, without storing): the SDK's own ceiling.
    if (TOTAL > 0) rows.push(await throughput("throughput through log() into a local bitacora serve", server.url, key, TOTAL));
    if (NULL_TOTAL > 0) {
      const ack = await startNullServer();
      try {
        rows.push(await throughput("throughput through log() into a null acknowledger (SDK ceiling)", ack.url, key, NULL_TOTAL));
      } finally {
        ack.proc.kill();
      }
    }
  } finally {
    await server.stop();
    server.cleanup();
  }
  if (DOWNTIME > 0) rows.push(await restartDrill(DOWNTIME));
  console.log(`\nnode ${process.version}, ${process.platform}/${process.arch}`);
}

// Interrupted (Ctrl-C, a timeout): exit through process.exit so that helpers.mjs stops the servers.
process.on("SIGINT", () => process.exit(130));
process.on("SIGTERM", () => process.exit(143));

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
