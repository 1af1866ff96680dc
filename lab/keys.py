"""The gateway's iked key pair, made the way OpenBSD's /etc/rc makes it at first boot.

OpenBSD's rc (``make_keys``, "openssl: generating iked ECDSA keys") runs ``openssl ecparam
-genkey -name prime256v1 -out /etc/iked/private/local.key`` and ``openssl ec -in
/etc/iked/private/local.key -pubout -out /etc/iked/local.pub`` when the key is missing. We run
the same two commands through pipes, so the private key never touches a temporary file; like
rc's, the private PEM starts with the curve's ``EC PARAMETERS`` block, which iked skips.
"""

from __future__ import annotations

import subprocess

CURVE = "prime256v1"  # NIST P-256


def make_keypair() -> tuple[str, str]:
    """Return ``(private_pem, public_pem)`` of a fresh ECDSA P-256 iked key."""
    private_pem = subprocess.run(
        ["openssl", "ecparam", "-genkey", "-name", CURVE],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    public_pem = subprocess.run(
        ["openssl", "ec", "-pubout"], input=private_pem, check=True, capture_output=True, text=True
    ).stdout
    return private_pem, public_pem


def public_pem_of(private_pem: str) -> str:
    """The public half of a private key PEM of any type (``openssl pkey -pubout``)."""
    return subprocess.run(
        ["openssl", "pkey", "-pubout"],
        input=private_pem,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
