"""Shared fixtures: throwaway SSH keys and the committed stack config as Pulumi passes it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cross_cloud_vpn.stack_file import read_stack_file

REPO = Path(__file__).resolve().parent.parent
DEV_STACK = REPO / "Pulumi.dev.yaml"
PSK = "correct-horse-battery-staple-0123456789"


@pytest.fixture(scope="session")
def ssh_keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A fresh RSA key pair (public, private) made by the real ssh-keygen."""
    key = tmp_path_factory.mktemp("ssh") / "id_rsa"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "ccvpn-test", "-f", str(key)],
        check=True,
    )
    return key.with_suffix(".pub").read_text().strip(), key.read_text()


@pytest.fixture()
def dev_config(ssh_keypair: tuple[str, str]) -> tuple[dict[str, str], set[str]]:
    """Pulumi.dev.yaml plus the keys a user sets with `pulumi config set` (private key secret)."""
    values = read_stack_file(DEV_STACK)
    values["cross-cloud-vpn:sshPublicKey"] = ssh_keypair[0]
    values["cross-cloud-vpn:sshPrivateKey"] = ssh_keypair[1]
    return values, {"cross-cloud-vpn:sshPrivateKey"}


@pytest.fixture(scope="session")
def iked_public_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each gateway's /etc/iked/local.pub, made as OpenBSD's rc (make_keys) makes it at first
    boot: an ECDSA P-256 key (`openssl ecparam -genkey -name prime256v1`), its public half
    written by `openssl ec -pubout`."""
    keys = {}
    folder = tmp_path_factory.mktemp("iked-keys")
    for site in ("aws", "azure"):
        private, public = folder / f"{site}.key", folder / f"{site}.pub"
        subprocess.run(["openssl", "ecparam", "-genkey", "-name", "prime256v1", "-out", str(private)],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "ec", "-in", str(private), "-pubout", "-out", str(public)],
                       check=True, capture_output=True)
        keys[site] = public.read_text()
    return keys
