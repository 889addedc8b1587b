"""Each integration imports with only its own framework available (the others are made
unimportable in a fresh interpreter), and the core needs none of them."""

from __future__ import annotations

import subprocess
import sys

import pytest

FRAMEWORKS = ["django", "flask", "starlette", "fastapi", "sqlalchemy", "psycopg", "cryptography"]

CASES = {
    "bitacora": [],
    "bitacora.verify": [],
    "bitacora.integrations.asgi": [],
    "bitacora.integrations.django": ["django"],
    "bitacora.integrations.flask": ["flask"],
    "bitacora.integrations.sqlalchemy": ["sqlalchemy"],
    "bitacora.integrations.psycopg": ["psycopg"],
}


@pytest.mark.parametrize("module", sorted(CASES))
def test_imports_without_the_other_frameworks(module: str) -> None:
    blocked = [f for f in FRAMEWORKS if f not in CASES[module]]
    script = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None  # makes `import name` raise ImportError\n"
        f"import {module}\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_signature_check_without_cryptography_says_what_to_install() -> None:
    script = (
        "import sys\n"
        "sys.modules['cryptography'] = None\n"
        "from bitacora.verify import _ed25519_verify, leaf_hash\n"
        "leaf_hash({'action': 'a'})  # hashes need no extra\n"
        "try:\n"
        "    _ed25519_verify(bytes(32), bytes(64), b'')\n"
        "except ImportError as e:\n"
        "    print('ImportError', e)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert 'pip install "bitacora-sdk[verify]"' in result.stdout, result.stdout + result.stderr
