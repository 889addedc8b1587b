#!/usr/bin/env bash
# The TypeScript SDK's one CI entry point:
#
#   BITACORA_BIN=/abs/path/to/bitacora sdks/typescript/test.sh
#
# On a fresh machine with Node >= 20 and npm: installs the locked dev dependencies (npm ci),
# builds ESM + CommonJS, type-checks (strict; the core without Node's types), runs the tests
# against a real `bitacora serve` and the machine's PostgreSQL, and proves the published
# package by packing it and importing every entry point as ESM and as CommonJS.
# It fails — never skips — when the binary or PostgreSQL is missing.
#
# BITACORA_TEST_PG (default postgres://postgres@127.0.0.1:5432) names a PostgreSQL server where
# the tests may create and drop throwaway databases (sdkts_<random>).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if [[ -z "${BITACORA_BIN:-}" ]]; then
  echo "test.sh: set BITACORA_BIN to the absolute path of a built bitacora binary" >&2
  exit 1
fi
case "$BITACORA_BIN" in
  /*) ;;
  *) BITACORA_BIN="$(cd "$(dirname "$BITACORA_BIN")" && pwd)/$(basename "$BITACORA_BIN")" ;;
esac
if [[ ! -x "$BITACORA_BIN" ]]; then
  echo "test.sh: BITACORA_BIN=$BITACORA_BIN is not an executable file" >&2
  exit 1
fi
export BITACORA_BIN

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 20 )); then
  echo "test.sh: Node >= 20 is required (found $(node --version))" >&2
  exit 1
fi

echo "== npm ci"
npm ci --no-audit --no-fund --loglevel=error

export BITACORA_TEST_PG="${BITACORA_TEST_PG:-postgres://postgres@127.0.0.1:5432}"
echo "== PostgreSQL at $BITACORA_TEST_PG"
node --input-type=module -e '
  import pg from "pg";
  const c = new pg.Client({ connectionString: process.env.BITACORA_TEST_PG + "/postgres", connectionTimeoutMillis: 5000 });
  try { await c.connect(); await c.query("SELECT 1"); await c.end(); }
  catch (e) { console.error("test.sh: PostgreSQL is required and not reachable: " + e.message); process.exit(1); }
'

echo "== build"
npm run --silent build

echo "== typecheck"
npx tsc -p tsconfig.json --noEmit
npx tsc -p tsconfig.core.json
npx tsc -p tsconfig.test.json

echo "== tests (real bitacora serve: $BITACORA_BIN)"
node --test --test-reporter=spec --test-concurrency=2 --test-timeout=120000 test/*.test.mjs

echo "== pack and import (ESM and CommonJS)"
node scripts/pack-check.mjs

echo "== ok"
