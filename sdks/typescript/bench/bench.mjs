// Benchmark of the SDK's two promises (issue 13, recorded in BENCHMARKS.md):
//   1. `log()` costs the caller <= 10 µs median — with the server up, down (connection
//      refused) and hanging (accepts, never answers);
//   2. one Node process pushes >= 20,000 events/s through `log()` into a local server.
//
//   npm run build && BITACORA_BIN=/abs/path/bitacora node bench/bench.mjs [--events 200000]
//
// Method. Caller cost: each `log()` call is timed alone with `process.hrtime.bigint()` (its own
// overhead, ~40-80 ns, is included, so figures are slightly pessimistic); calls come in bursts of
// 1,000 with a macrotask between bursts, as requests in a server would, so the sender runs.
// Throughput: events are logged in bursts of 1,000 with a macrotask between bursts, pausing
// while more than 8,000 wait (never dropping); the rate is events / time from the first
// `log()` to `flush()` resolving (every event acknowledged by the server).

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
const TOTAL = arg("--events", 200_000);
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

async function main() {
  const server = await startServer();
  const key = createKey(server, "ingest");
  const rows = [];
  try {
    const quiet = { exitFlushTimeout: 0, onError: () => {} };

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

    // 2. throughput into the local server
    const tp = new Bitacora({ url: server.url, apiKey: key, ...quiet });
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < TOTAL; ) {
      while (tp.stats().queued > 8000) await new Promise((r) => setTimeout(r, 1));
      const burst = Math.min(1000, TOTAL - i);
      for (let j = 0; j < burst; j++) tp.log(event(i++));
      await tick();
    }
    const flushed = await tp.flush(120_000);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const s = tp.stats();
    const row = {
      scenario: "throughput through log() into a local server",
      events: TOTAL,
      seconds: +seconds.toFixed(2),
      events_per_s: Math.round(s.sent / seconds),
      flushed,
      ...s,
    };
    console.log(JSON.stringify(row));
    rows.push(row);
    await tp.shutdown(1000);
  } finally {
    await server.stop();
    server.cleanup();
  }
  console.log(`\nnode ${process.version}, ${process.platform}/${process.arch}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
