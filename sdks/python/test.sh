#!/usr/bin/env bash
# The Python SDK's checks, as CI runs them:
#   BITACORA_BIN=/abs/path/to/bitacora sdks/python/test.sh [pytest args...]
# Creates a virtualenv (sdks/python/.venv), installs the SDK as a user would (non-editable,
# every extra) plus the pinned test tools, then runs ruff, mypy (strict) and pytest against a
# real `bitacora serve` and PostgreSQL at 127.0.0.1:5432. A missing binary or database fails
# the run; nothing is skipped. Needs no network but PyPI.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# Resolved before changing directory, so a relative BITACORA_BIN means what the caller meant.
if [ -z "${BITACORA_BIN:-}" ] || [ ! -x "${BITACORA_BIN}" ]; then
    echo "test.sh: set BITACORA_BIN to the bitacora binary (e.g. target/debug/bitacora)" >&2
    exit 1
fi
BITACORA_BIN="$(cd "$(dirname "$BITACORA_BIN")" && pwd)/$(basename "$BITACORA_BIN")"
export BITACORA_BIN
cd "$here"

if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "test.sh: PostgreSQL is not answering at 127.0.0.1:5432" >&2
    exit 1
fi

python="${PYTHON:-python3}"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
# As a user installs it: from the directory, not editable, with every extra. --force-reinstall
# of the SDK alone (not its dependencies) so the tests never run against a stale build.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --force-reinstall --no-deps "$here"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$here[all]"

# The tests must import the installed package, never src/ by accident.
"$venv/bin/python" - <<'PY'
import bitacora, sys
assert "site-packages" in bitacora.__file__, bitacora.__file__
PY

echo "== ruff"
"$venv/bin/ruff" check src tests bench
"$venv/bin/ruff" format --check src tests bench
echo "== mypy --strict"
"$venv/bin/mypy" --strict src/bitacora
echo "== pytest"
# (src/ layout: the working directory on sys.path holds no `bitacora` package to shadow it.)
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
