// Proves the published shape: `npm pack`, install the tarball into a scratch project (no
// registry needed: the package has no dependencies), then import every entry point as ESM
// and require it as CommonJS. Also checks that the runtime-neutral entry points (`bitacora`,
// `bitacora/verify`) load no `node:` module, directly or transitively.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const scratch = mkdtempSync(join(tmpdir(), "bitacora-pack-"));
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });

try {
  const packed = JSON.parse(run(npm, ["pack", "--json", "--pack-destination", scratch], root));
  const tarball = join(scratch, packed[0].filename);
  const files = packed[0].files.map((f) => f.path);
  for (const must of ["dist/esm/index.js", "dist/cjs/index.js", "dist/esm/index.d.ts", "dist/cjs/package.json", "README.md", "package.json"]) {
    if (!files.includes(must)) throw new Error(`the tarball lacks ${must}`);
  }
  if (files.some((f) => f.startsWith("src/") || f.startsWith("test/"))) throw new Error("the tarball ships sources or tests");

  const app = join(scratch, "app");
  execFileSync("mkdir", ["-p", app]);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "scratch-app", private: true, version: "0.0.0" }));
  run(npm, ["install", "--no-audit", "--no-fund", "--offline", tarball], app);

  const entries = {
    bitacora: ["Bitacora", "BitacoraError", "uuidv7"],
    "bitacora/context": ["runWithAuditContext", "auditContext"],
    "bitacora/express": ["bitacoraExpress"],
    "bitacora/fastify": ["bitacoraFastify"],
    "bitacora/pg": ["withAuditContext", "setAuditContext"],
    "bitacora/verify": ["verifyEvent", "verifyEventProof", "canonicalize", "leafHash"],
  };
  const checks = Object.entries(entries)
    .map(([spec, names]) => names.map((n) => `if (typeof m${JSON.stringify(spec).replace(/[^a-z]/g, "_")}.${n} !== "function") throw new Error("${spec}: ${n}");`).join("\n"))
    .join("\n");
  const esm =
    Object.keys(entries).map((spec) => `import * as m${JSON.stringify(spec).replace(/[^a-z]/g, "_")} from ${JSON.stringify(spec)};`).join("\n") +
    "\n" + checks + "\n" +
    // Context set through the ESM build must be seen by the CommonJS build and vice versa.
    `import { createRequire } from "node:module";\nconst require = createRequire(import.meta.url);\n` +
    `const cjs = require("bitacora/context");\n` +
    `const seen = m_bitacora_context_.runWithAuditContext({ requestId: "r1" }, () => cjs.auditContext()?.requestId);\n` +
    `if (seen !== "r1") throw new Error("ESM and CommonJS builds do not share the audit context");\n` +
    `const b = new m_bitacora_.Bitacora({ url: "http://127.0.0.1:1", exitFlushTimeout: 0, onError() {} });\n` +
    `if (!/^[0-9a-f-]{36}$/.test(b.log({ action: "a.b" }))) throw new Error("log");\n` +
    `await b.shutdown(1);\nconsole.log("esm ok");\n`;
  const cjsSrc =
    Object.keys(entries).map((spec) => `const m${JSON.stringify(spec).replace(/[^a-z]/g, "_")} = require(${JSON.stringify(spec)});`).join("\n") +
    "\n" + checks + "\n" +
    `if (!require.resolve("bitacora").includes("/dist/cjs/")) throw new Error("require did not pick the CommonJS build");\n` +
    `console.log("cjs ok");\n`;
  writeFileSync(join(app, "esm.mjs"), esm);
  writeFileSync(join(app, "cjs.cjs"), cjsSrc);
  process.stdout.write(run(process.execPath, ["esm.mjs"], app));
  process.stdout.write(run(process.execPath, ["cjs.cjs"], app));

  // Runtime neutrality of the core: walk the ESM import graph from the neutral entry points.
  const installed = join(app, "node_modules/bitacora/dist/esm");
  const seen = new Set();
  const walk = (file, from) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)[^;]*?from\s*"([^"]+)"/g)) {
      const spec = m[1];
      if (!spec.startsWith(".")) throw new Error(`${from} loads ${spec} (via ${file}): the core must load no Node-only or external module`);
      walk(resolve(dirname(file), spec), from);
    }
  };
  for (const entry of ["index.js", "verify.js"]) walk(join(installed, entry), entry);
  console.log(`core entry points load only ${seen.size} own modules, no node: imports`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
