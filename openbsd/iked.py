"""``iked.conf`` for one gateway of the pair: a pure function of plain values.

Cloud gateways sit behind 1:1 NAT (an Elastic IP, an Azure public IP): the host only ever
sees its private address, while its peer knows it by the public one. So ``local`` is the
gateway's own private IP, ``peer`` is the other side's public IP, and both IDs are the public
IPs, which is also the name under which iked looks up the peer's public key
(``/etc/iked/pubkeys/ipv4/<peer public IP>``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["active", "passive"]
AuthMode = Literal["pubkey", "psk"]

#: IKE SA proposal: AES-GCM with a SHA-2 PRF and X25519, the strongest set both
#: OpenBSD and the Linux build of OpenIKED negotiate.
DEFAULT_IKE_PROPOSAL = "enc aes-256-gcm prf hmac-sha2-256 group curve25519"
#: Child SA proposals, in order of preference. OpenBSD picks the first (AES-GCM); the
#: Linux build of iked drops AEAD child proposals when it parses them and so negotiates
#: the second. A child SA with hmac-sha2-256 does not install on Linux, hence sha2-512.
DEFAULT_CHILD_PROPOSALS: tuple[str, ...] = (
    "enc aes-256-gcm group curve25519",
    "enc aes-256 auth hmac-sha2-512 group curve25519",
)
DEFAULT_DPD_INTERVAL = 30

#: Where iked finds the key of a peer whose ID is an IPv4 address.
PEER_PUBKEY_DIR = "/etc/iked/pubkeys/ipv4"
IKED_CONF_PATH = "/etc/iked.conf"
IKED_CONF_MODE = 0o600

# Transform names accepted by iked.conf(5), by the keyword that takes them.
_TRANSFORMS: dict[str, frozenset[str]] = {
    "enc": frozenset(
        {
            "3des", "aes-128", "aes-192", "aes-256", "aes-128-ctr", "aes-192-ctr", "aes-256-ctr",
            "aes-128-gcm", "aes-192-gcm", "aes-256-gcm", "aes-128-gcm-12", "aes-256-gcm-12",
            "blowfish", "cast", "chacha20-poly1305", "aes-128-gmac", "aes-192-gmac", "aes-256-gmac",
            "null",
        }
    ),
    "auth": frozenset({"hmac-md5", "hmac-sha1", "hmac-sha2-256", "hmac-sha2-384", "hmac-sha2-512"}),
    "prf": frozenset({"hmac-md5", "hmac-sha1", "hmac-sha2-256", "hmac-sha2-384", "hmac-sha2-512"}),
    "group": frozenset(
        {
            "modp1024", "modp1536", "modp2048", "modp3072", "modp4096", "modp6144", "modp8192",
            "ecp256", "ecp384", "ecp521", "ecp192", "ecp224", "brainpool224", "brainpool256",
            "brainpool384", "brainpool512", "curve25519", "sntrup761x25519",
        }
    ),
}
_KEYWORDS = {"ike": ("enc", "prf", "group", "auth"), "child": ("enc", "auth", "group")}


def proposal_problems(proposal: str, kind: Literal["ike", "child"]) -> list[str]:
    """What is wrong with one ``ikesa``/``childsa`` proposal, as sentences; empty when fine."""
    words = proposal.split()
    if not words:
        return ["is empty"]
    problems: list[str] = []
    if len(words) % 2:
        problems.append(f"'{words[-1]}' has no value after it")
    allowed = _KEYWORDS[kind]
    for keyword, value in zip(words[::2], words[1::2], strict=False):
        if keyword not in allowed:
            problems.append(f"'{keyword}' is not one of {', '.join(allowed)}")
        elif value not in _TRANSFORMS[keyword]:
            problems.append(f"'{value}' is not a known {keyword} transform")
    if "enc" not in words[::2]:
        problems.append("has no 'enc' transform")
    return problems


@dataclass(frozen=True)
class PubkeyAuth:
    """Each gateway authenticates with its own host key; only public keys cross."""

    mode: Literal["pubkey"] = "pubkey"


@dataclass(frozen=True)
class PskAuth:
    """A pre-shared key; the rendered file then holds a secret."""

    psk: str = field(repr=False)
    mode: Literal["psk"] = "psk"


@dataclass(frozen=True)
class IkedGateway:
    """Everything one gateway's ``iked.conf`` depends on."""

    policy_name: str
    local_private_ip: str
    local_public_ip: str
    peer_public_ip: str
    local_cidrs: Sequence[str]
    remote_cidrs: Sequence[str]
    auth: PubkeyAuth | PskAuth
    role: Role = "active"
    ike_proposal: str = DEFAULT_IKE_PROPOSAL
    child_proposals: Sequence[str] = DEFAULT_CHILD_PROPOSALS
    dpd_interval: int = DEFAULT_DPD_INTERVAL
    enforce_single_ikesa: bool = True


def peer_pubkey_path(peer_public_ip: str) -> str:
    """The path iked reads the peer's public key from when the peer's ID is its IPv4 address."""
    return f"{PEER_PUBKEY_DIR}/{ipaddress.IPv4Address(peer_public_ip)}"


def _check(gw: IkedGateway) -> None:
    for label, address in (
        ("local_private_ip", gw.local_private_ip),
        ("local_public_ip", gw.local_public_ip),
        ("peer_public_ip", gw.peer_public_ip),
    ):
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise ValueError(f"{label} {address!r} is not an IPv4 address") from None
    if not gw.local_cidrs or not gw.remote_cidrs:
        raise ValueError("iked.conf needs at least one local and one remote CIDR")
    for cidr in (*gw.local_cidrs, *gw.remote_cidrs):
        ipaddress.IPv4Network(cidr)
    if not gw.policy_name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"policy name {gw.policy_name!r} may hold only letters, digits, '-' and '_'")
    problems = proposal_problems(gw.ike_proposal, "ike")
    for child in gw.child_proposals:
        problems += proposal_problems(child, "child")
    if problems or not gw.child_proposals:
        raise ValueError(f"bad proposal: {'; '.join(problems) or 'no child proposal'}")
    if gw.dpd_interval < 0:
        raise ValueError(f"dpd_interval {gw.dpd_interval} is negative")
    if isinstance(gw.auth, PskAuth):
        psk_problem = psk_problem_text(gw.auth.psk)
        if psk_problem:
            raise ValueError(f"psk {psk_problem}")


MIN_PSK_LENGTH = 20


def psk_problem_text(psk: str) -> str | None:
    """Why a PSK cannot be used (never quoting the PSK itself), or None."""
    if len(psk) < MIN_PSK_LENGTH:
        return f"is {len(psk)} characters long; use at least {MIN_PSK_LENGTH}"
    if any(ch in psk for ch in '"\\') or not psk.isprintable():
        return 'may hold only printable characters other than " and \\'
    return None


def render_iked_conf(gw: IkedGateway) -> str:
    """The whole ``/etc/iked.conf`` of one gateway (install it 0600, owner root)."""
    _check(gw)
    flows = [f"from {local} to {remote}" for local in gw.local_cidrs for remote in gw.remote_cidrs]
    # rfc7427: sign with SHA2-256 (RFC 7427), not the SHA-1 of plain `rsa`; works with the RSA
    # key OpenBSD makes at first boot (rehearsed with the Linux iked too).
    auth = "rfc7427" if isinstance(gw.auth, PubkeyAuth) else f'psk "{gw.auth.psk}"'
    body = [
        *flows,
        f"local {gw.local_private_ip} peer {gw.peer_public_ip}",
        f"ikesa {gw.ike_proposal}",
        *(f"childsa {child}" for child in gw.child_proposals),
        f'srcid "{gw.local_public_ip}" dstid "{gw.peer_public_ip}"',
        auth,
    ]
    lines = [
        "# Rendered by cross-cloud-vpn; edits are overwritten on the next `pulumi up`.",
        "# local is this host's private address: the cloud maps the public one 1:1 onto it.",
    ]
    if gw.enforce_single_ikesa:
        lines.append("# Both sides initiate; one IKE SA per peer keeps a restart from leaving stale SAs.")
        lines.append("set enforcesingleikesa")
    lines.append(f"set dpd_check_interval {gw.dpd_interval}")
    lines.append("")
    lines.append(f'ikev2 "{gw.policy_name}" {gw.role} esp \\')
    lines.extend(f"\t{item} \\" for item in body[:-1])
    lines.append(f"\t{body[-1]}")
    return "\n".join(lines) + "\n"
