// The SDK's wire types must be the server's: regenerate them from the live server's
// /openapi.json and compare with the committed src/generated/openapi.ts.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";

import { generate } from "../scripts/generate-types.mjs";
import { startServer } from "./helpers.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.stop();
  server.cleanup();
});

test("src/generated/openapi.ts matches the server's /openapi.json", async () => {
  const document = await (await fetch(`${server.url}/openapi.json`)).json();
  const fresh = await generate(document);
  const committed = readFileSync(new URL("../src/generated/openapi.ts", import.meta.url), "utf8");
  if (fresh !== committed) {
    const a = committed.split("\n");
    const b = fresh.split("\n");
    let i = 0;
    while (i < a.length && a[i] === b[i]) i++;
    assert.fail(
      `the SDK's types drifted from the server's OpenAPI document (first difference at line ${i + 1}:\n` +
        `  committed: ${a[i]}\n  server:    ${b[i]})\n` +
        "regenerate with: npm run generate -- --url <server>/openapi.json, then review the SDK against the change",
    );
  }
  // The names the SDK re-exports must exist in the document.
  for (const name of ["EventInput", "Event", "Actor", "Target", "Change", "Context", "Severity", "Outcome", "ActorType", "Ack", "ErrorDetail", "BatchResponse", "InclusionProof"]) {
    assert.ok(document.components.schemas[name], `schema ${name} is in /openapi.json`);
  }
});
