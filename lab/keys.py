"""The gateway's iked key pair, made the way OpenBSD's /etc/rc makes it at first boot.

OpenBSD's rc runs ``openssl genrsa -out /etc/iked/private/local.key 2048`` and then
``openssl rsa -out /etc/iked/local.pub -in /etc/iked/private/local.key -pubout`` when
the key is missing.  We run the same two commands through pipes, so the private key never
touches a temporary file.
"""

from __future__ import annotations

import subprocess

RSA_BITS = 2048


def make_keypair() -> tuple[str, str]:
    """Return ``(private_pem, public_pem)`` of a fresh RSA-2048 iked key."""
    private_pem = subprocess.run(
        ["openssl", "genrsa", str(RSA_BITS)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return private_pem, public_pem_of(private_pem)


def public_pem_of(private_pem: str) -> str:
    """The public half (``openssl rsa -pubout``) of a private key PEM."""
    return subprocess.run(
        ["openssl", "rsa", "-pubout"],
        input=private_pem,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
