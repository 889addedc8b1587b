// Test harness: a real `bitacora serve` on an ephemeral port, a scriptable HTTP proxy in front
// of it (to lose responses, answer 429/503, or tamper with what the server says), and small
// HTTP helpers. Tests import the built package (dist/), as users do.

import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";

export const BIN = process.env.BITACORA_BIN;
if (!BIN) throw new Error("BITACORA_BIN must name the bitacora binary (the tests run against a real server)");

// Servers still running when this process exits (a failed test, an interrupted benchmark) are
// stopped with it rather than left behind.
const running = new Set();
const tempDirs = new Set();
process.on("exit", () => {
  for (const proc of running) proc.kill("SIGKILL");
  for (const dir of tempDirs) {
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}.signing-key`, { force: true });
  }
});

/**
 * Starts `bitacora serve` on `listen` (default an ephemeral port) over `dataDir` (default a new
 * temp dir) and resolves once it printed `listening on http://ADDR`.
 */
export async function startServer({ dataDir, listen = "127.0.0.1:0", args = [], env = {} } = {}) {
  const data = dataDir ?? mkdtempSync(join(tmpdir(), "bitacora-sdkts-"));
  tempDirs.add(data);
  const proc = spawn(BIN, ["serve", "--data", data, ...args], {
    env: { ...process.env, BITACORA_LISTEN: listen, RUST_LOG: process.env.RUST_LOG ?? "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(proc);
  proc.once("exit", () => running.delete(proc));
  let stderr = "";
  proc.stderr.on("data", (d) => {
    stderr += d;
    if (process.env.TEST_LOG) process.stderr.write(d);
  });
  const url = await new Promise((resolve, reject) => {
    let out = "";
    const onData = (d) => {
      out += d;
      const nl = out.indexOf("\n");
      if (nl >= 0) {
        proc.stdout.off("data", onData);
        const m = /^listening on (http:\/\/\S+)/.exec(out.slice(0, nl));
        if (m) resolve(m[1]);
        else reject(new Error(`unexpected first line: ${out.slice(0, nl)}`));
        proc.stdout.resume();
      }
    };
    proc.stdout.on("data", onData);
    proc.once("exit", (code) => reject(new Error(`bitacora serve exited (${code}) before listening: ${stderr}`)));
  });
  // The key file is written just after the listening line; on a reused store it is already there.
  const keyFile = join(data, "initial-admin-key");
  for (let i = 0; !existsSync(keyFile) || statSync(keyFile).size === 0; i++) {
    if (i > 200) throw new Error(`no ${keyFile} after 10 s: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const adminKey = readFileSync(keyFile, "utf8").trim();
  return {
    url,
    port: Number(new URL(url).port),
    adminKey,
    dataDir: data,
    proc,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await once(proc, "exit");
      clearTimeout(timer);
    },
    cleanup() {
      rmSync(data, { recursive: true, force: true });
      // The checkpoint signing key lives beside the store (`<data>.signing-key`), not in it.
      rmSync(`${data}.signing-key`, { force: true });
    },
  };
}

/** Runs the bitacora CLI synchronously; throws with its output on failure. */
export function bitacora(args, env = {}) {
  const r = spawnSync(BIN, args, { env: { ...process.env, ...env }, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`bitacora ${args.join(" ")} failed (${r.status}): ${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** Creates an API key with `scope` in the server's store; returns the secret. */
export function createKey(server, scope, name = `sdkts-${scope}`) {
  const out = bitacora(["keys", "create", "--scope", scope, "--name", name, "--data", server.dataDir]);
  return out.trim().split("\n").pop().trim();
}

/**
 * An HTTP proxy in front of `upstream` whose behaviour per request is decided by
 * `handler({method, url, headers, body, count})`, returning one of:
 *   "forward"                       pass the request and response through
 *   "drop-response"                 forward the request, then close the socket without answering
 *   {status, headers?, body?}       answer this instead, without forwarding
 *   {rewrite: (text) => text}       forward, then rewrite the response body
 * `requests` records every request seen.
 */
export async function startProxy(upstream, handler = () => "forward") {
  const requests = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    const entry = { method: req.method, url: req.url, headers: req.headers, body: body.toString("utf8"), count: requests.length + 1 };
    requests.push(entry);
    let action;
    try {
      action = await proxy.handler(entry);
    } catch (err) {
      res.writeHead(500).end(String(err));
      return;
    }
    if (typeof action === "object" && action.status !== undefined) {
      res.writeHead(action.status, { "content-type": "application/json", ...action.headers });
      res.end(action.body ?? "");
      return;
    }
    const headers = { ...req.headers };
    delete headers.host;
    delete headers["content-length"];
    delete headers.connection;
    let upstreamRes;
    try {
      upstreamRes = await fetch(proxy.upstream + req.url, {
        method: req.method,
        headers,
        body: req.method === "GET" || req.method === "HEAD" ? undefined : body,
      });
    } catch {
      req.socket.destroy();
      return;
    }
    let text = await upstreamRes.text();
    if (action === "drop-response") {
      // The server stored the batch; the client never hears so. Its retry must be a duplicate.
      req.socket.destroy();
      return;
    }
    if (typeof action === "object" && action.rewrite) text = action.rewrite(text);
    const outHeaders = {};
    upstreamRes.headers.forEach((v, k) => {
      if (k !== "content-length" && k !== "content-encoding" && k !== "transfer-encoding" && k !== "connection") outHeaders[k] = v;
    });
    res.writeHead(upstreamRes.status, outHeaders);
    res.end(text);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const proxy = {
    url: `http://127.0.0.1:${server.address().port}`,
    upstream,
    handler,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return proxy;
}

/** GET/POST JSON against the server with a key; throws on non-2xx. */
export async function api(server, path, { key = server.adminKey, method = "GET", body } = {}) {
  const res = await fetch(server.url + path, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text === "" ? undefined : JSON.parse(text);
}

/** Every stored event matching the query (walks the cursor). */
export async function events(server, query = {}) {
  const out = [];
  let cursor;
  for (;;) {
    const q = new URLSearchParams({ limit: "1000", order: "asc", ...query, ...(cursor ? { cursor } : {}) });
    const page = await api(server, `/v1/events?${q}`);
    out.push(...page.events);
    if (!page.next_cursor) return out;
    cursor = page.next_cursor;
  }
}

/** Polls `fn` until it returns a truthy value or `ms` pass. */
export async function eventually(fn, ms = 10_000, what = "condition") {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A unique action prefix per test, so tests sharing a server never see each other's events. */
let counter = 0;
export function uniqueAction(base = "test") {
  counter++;
  return `${base}.${process.pid}_${Date.now().toString(36)}_${counter}`;
}

/** Fails the test run on any unhandled rejection (the SDK promises none ever escapes). */
export const unhandled = [];
process.on("unhandledRejection", (reason) => {
  unhandled.push(reason);
});

/** A TCP port nobody listens on (bound and released). */
export async function closedPort() {
  const s = http.createServer();
  s.listen(0, "127.0.0.1");
  await once(s, "listening");
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}
