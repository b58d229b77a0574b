"""``keyless demo --check`` (what ``make demo`` shows) passes, prints the table, and is quick."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import require_tool

ROWS = {
    "TLS 1.3 full handshake (ECDSA)": 1,
    "TLS 1.3 resumed (ticket)": 0,
    "TLS 1.2 ECDHE-ECDSA": 1,
    "TLS 1.2 RSA key exchange": 1,
    "TLS 1.2 resumed": 0,
    "TLS 1.3 full (sess_out)": 1,
    "TLS 1.3 resumed (sess_in)": 0,
    "TLS 1.3 full, X25519MLKEM768": 1,  # tlslite-ng offering the hybrid group first; the edge's metric confirms it
    "TLS 1.3 full, ML-DSA-65 cert": 1,  # tlslite-ng 0.9.0b2 (a dev dependency) against the ML-DSA certificate
}


def test_demo_check_passes() -> None:
    require_tool("openssl")
    # How long the demo takes is this machine's business (a figure, not a test); 240 s means it hangs.
    result = subprocess.run(
        [sys.executable, "-m", "keyless", "demo", "--check"], capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for label, operations in ROWS.items():
        pattern = rf"^{re.escape(label)}\s+(python ssl|openssl s_client|tlslite-ng)\s+(\d+)\s+(\d+)\s+OK\b"
        match = re.search(pattern, result.stdout, re.MULTILINE)
        assert match is not None, f"no OK row for {label!r}:\n{result.stdout}"
        assert (int(match.group(2)), int(match.group(3))) == (operations, operations)
    assert "RSA key exchange" in result.stdout and "1 decrypt" in result.stdout
    # The key server's own counter: five signatures (one ML-DSA) and one decryption by the time the table prints,
    # and the edge's start-up check of each of its five certificates' keys (one signature each, before it is ready).
    assert re.search(r"^  keyless_sign_requests_total 11$", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r'^  keyless_requests\{opcode="MLDSA65_SIGN_MU"\} 2$', result.stdout, re.MULTILINE), result.stdout
    assert "all checks passed" in result.stdout
