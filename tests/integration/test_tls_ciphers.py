"""What an M2_TLS_CIPHERS override can and cannot open (mongrel2/entrypoint.sh, docs/tls.md).

The entrypoint checks the list before it renders anything, so each refusal is one line on
stderr and exit status 64; an accepted list goes on to start mongrel2 (here it stops at
the missing certificate, the next check). The end-to-end TLS tests run a front with an
override and show that only its suites are negotiated.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def entrypoint(tmp_path: Path, ciphers: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, M2_TLS="1", M2_TLS_CIPHERS=ciphers, M2_RUN_DIR=str(tmp_path),
               M2_STATIC_DIR=str(ROOT / "mongrel2" / "static"),
               M2_TLS_CERT=str(tmp_path / "missing.crt"), M2_TLS_KEY=str(tmp_path / "missing.key"))
    return subprocess.run(["sh", str(ROOT / "mongrel2" / "entrypoint.sh"), "true"], env=env,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("suite", [
    "TLS-RSA-WITH-NULL-SHA256",                  # a SHA-2 MAC and no encryption at all
    "TLS-ECDHE-RSA-WITH-AES-128-CBC-SHA256",     # TLS 1.2 only, but CBC
    "TLS-ECDHE-ECDSA-WITH-AES-256-CBC-SHA384",
    "TLS-RSA-WITH-AES-128-CBC-SHA",              # usable in TLS 1.0: would reopen it
    "TLS-ECDHE-RSA-WITH-3DES-EDE-CBC-SHA",
    "TLS-RSA-WITH-RC4-128-SHA",
])
def test_an_override_cannot_open_a_suite_that_is_not_aead(tmp_path, suite):
    result = entrypoint(tmp_path, f"TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256 {suite}")
    assert result.returncode == 64, result
    line, = result.stderr.splitlines()
    assert line.startswith(f"entrypoint: M2_TLS_CIPHERS: {suite} is not an AEAD suite"), line


@pytest.mark.parametrize("ciphers", ["TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256;rm", "tls-ecdhe"])  # empty: the default
def test_an_override_that_is_not_a_list_of_names_is_refused(tmp_path, ciphers):
    result = entrypoint(tmp_path, ciphers)
    assert result.returncode == 64 and "M2_TLS_CIPHERS must be mbedtls suite names" in result.stderr, result


@pytest.mark.parametrize("ciphers", [
    "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384",
    "TLS-ECDHE-RSA-WITH-CHACHA20-POLY1305-SHA256 TLS-ECDHE-ECDSA-WITH-AES-128-CCM",
    "TLS-ECDHE-ECDSA-WITH-AES-128-CCM-8",
])
def test_an_override_of_aead_suites_passes_the_check(tmp_path, ciphers):
    result = entrypoint(tmp_path, ciphers)
    # Past the suite check: the next one is the certificate's.
    assert "M2_TLS_CIPHERS" not in result.stderr, result.stderr
    assert result.returncode != 0 and "missing.crt" in result.stderr, result
