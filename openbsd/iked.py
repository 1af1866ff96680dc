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

# The transforms iked.conf(5) takes, as the parser's tables hold them: OpenBSD's
# sbin/iked/parse.y (rev 1.149, 2025: ikeencxfs, ipsecencxfs, authxfs, prfxfs, groupxfs,
# esnxfs) and what Debian's openiked 7.2 `iked -n` accepts (tests/test_openbsd_iked.py feeds
# every value to it). Where the two differ only what both accept is here: `ecp192`/`grp25`
# (gone from OpenBSD's table in 2025) and the `ec2n*` groups (not in Debian's 7.2) are left out.
_HMACS = frozenset({"hmac-md5", "hmac-sha1", "hmac-sha2-256", "hmac-sha2-384", "hmac-sha2-512"})
_GROUPS = frozenset(
    {
        "modp768", "grp1", "modp1024", "grp2", "modp1536", "grp5", "modp2048", "grp14",
        "modp3072", "grp15", "modp4096", "grp16", "modp6144", "grp17", "modp8192", "grp18",
        "ecp256", "grp19", "ecp384", "grp20", "ecp521", "grp21", "ecp224", "grp26",
        "brainpool224", "grp27", "brainpool256", "grp28", "brainpool384", "grp29",
        "brainpool512", "grp30", "curve25519", "grp31", "sntrup761x25519",
    }
)
#: Ciphers with their own integrity (AEAD, GMAC): parse.y's `noauth` column. create_ike()
#: refuses them next to an `auth` transform ("authentication is implicit") and mixed with
#: ciphers that need one ("cannot mix encryption transforms").
_IMPLICIT_AUTH = frozenset(
    {
        "aes-128-gcm", "aes-192-gcm", "aes-256-gcm", "aes-128-gcm-12", "aes-256-gcm-12",
        "aes-128-gmac", "aes-192-gmac", "aes-256-gmac", "chacha20-poly1305",
    }
)
_TRANSFORMS: dict[str, dict[str, frozenset[str]]] = {
    # ikesa: ikeencxfs has no CTR, GMAC, ChaCha20, Blowfish, CAST or null, and no 192-bit GCM.
    "ike": {
        "enc": frozenset(
            {
                "3des", "3des-cbc", "aes-128", "aes-192", "aes-256", "aes-128-gcm", "aes-256-gcm",
                "aes-128-gcm-12", "aes-256-gcm-12",
            }
        ),
        "auth": _HMACS,
        "prf": _HMACS,
        # `group none` (no PFS) and esn/noesn are for child SAs: parse.y's create_ike() refuses
        # them in an ikesa ('IKE group can not be "none"', "cannot use ESN with ikesa").
        "group": _GROUPS,
    },
    # childsa: ipsecencxfs has no 12-byte-ICV GCM; `prf` means nothing for a child SA, so it is
    # refused here although iked ignores it.
    "child": {
        "enc": frozenset(
            {
                "3des", "3des-cbc", "aes-128", "aes-192", "aes-256", "aes-128-ctr", "aes-192-ctr",
                "aes-256-ctr", "aes-128-gcm", "aes-192-gcm", "aes-256-gcm", "aes-128-gmac",
                "aes-192-gmac", "aes-256-gmac", "blowfish", "cast", "chacha20-poly1305", "null",
            }
        ),
        "auth": _HMACS,
        "group": _GROUPS | {"none"},
    },
}
_SA_NAME = {"ike": "an IKE SA", "child": "a child SA"}
#: `esn`/`noesn` stand alone (parse.y's transform_esn), and only in a child SA.
_FLAGS = {"ike": frozenset[str](), "child": frozenset({"esn", "noesn"})}


def proposal_problems(proposal: str, kind: Literal["ike", "child"]) -> list[str]:
    """What is wrong with one ``ikesa``/``childsa`` proposal, as sentences; empty when fine.

    Agrees with the real parser both ways (``tests/test_openbsd_iked.py``): a proposal this
    accepts, ``iked -n`` accepts; every refusal but ``prf`` in a child SA is one iked makes too.
    A keyword left out takes iked's default for it.
    """
    words = proposal.split()
    if not words:
        return ["is empty"]
    table, flags = _TRANSFORMS[kind], _FLAGS[kind]
    problems: list[str] = []
    enc: list[str] = []
    auth = False
    i = 0
    while i < len(words):
        keyword = words[i]
        if keyword in flags:
            i += 1
            continue
        if keyword not in table:
            allowed = ", ".join([*table, *sorted(flags)])
            problems.append(f"'{keyword}' is not one of {allowed}")
            i += 1
            continue
        if i + 1 >= len(words):
            problems.append(f"'{keyword}' has no value after it")
            break
        value = words[i + 1]
        i += 2
        if value not in table[keyword]:
            problems.append(f"'{value}' is not a known {keyword} transform for {_SA_NAME[kind]}")
        elif keyword == "enc":
            enc.append(value)
        elif keyword == "auth":
            auth = True
    implicit = [e for e in enc if e in _IMPLICIT_AUTH]
    if implicit and len(implicit) != len(enc):
        problems.append(f"mixes {', '.join(implicit)} (authenticates itself) with ciphers that need 'auth'")
    elif implicit and auth:
        problems.append(f"{implicit[0]} authenticates itself: drop 'auth'")
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
    #: HA mode: the peer gateway's private IP. Adds one host flow between the two gateways'
    #: private addresses, which carries their BGP session (``openbsd/bgpd.py``) through the tunnel.
    bgp_peer_private_ip: str | None = None


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
    if gw.bgp_peer_private_ip is not None:
        try:
            peer = ipaddress.IPv4Address(gw.bgp_peer_private_ip)
        except ValueError:
            raise ValueError(f"bgp_peer_private_ip {gw.bgp_peer_private_ip!r} is not an IPv4 address") \
                from None
        if peer == ipaddress.IPv4Address(gw.local_private_ip):
            raise ValueError("bgp_peer_private_ip is this gateway's own private IP")
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
    if psk.startswith("0x"):
        # parse.y's keyspec reads a PSK that starts with "0x" as hex digits, not as text.
        return "starts with '0x', which iked reads as hex digits, not as text; make another"
    return None


def render_iked_conf(gw: IkedGateway) -> str:
    """The whole ``/etc/iked.conf`` of one gateway (install it 0600, owner root)."""
    _check(gw)
    flows = [f"from {local} to {remote}" for local in gw.local_cidrs for remote in gw.remote_cidrs]
    if gw.bgp_peer_private_ip is not None:
        # HA: the two gateways' BGP session travels in the tunnel too, so it lives and dies with it.
        flows.append(f"from {gw.local_private_ip} to {gw.bgp_peer_private_ip}")
    # rfc7427: RFC 7427 signatures (SHA2-256) with whatever key the host has: OpenBSD's rc makes
    # an ECDSA P-256 key at first boot (older images: RSA). Plain `rsa` could sign with neither
    # EC keys nor anything but SHA-1. Rehearsed with P-256 keys and the Linux iked.
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
    # Each file knows only its own role, so it says only that: the peer's file says the peer's.
    lines.append(
        "# This side initiates (active); the peer may initiate too."
        if gw.role == "active"
        else "# This side only answers (passive): the peer initiates."
    )
    if gw.enforce_single_ikesa:
        lines.append("# One IKE SA per peer: a restart leaves no stale SA behind.")
        lines.append("set enforcesingleikesa")
    # 0 turns DPD off; iked's parser takes any number >= 0 (parse.y: "timeout outside range").
    lines.append(f"set dpd_check_interval {gw.dpd_interval}")
    lines.append("")
    lines.append(f'ikev2 "{gw.policy_name}" {gw.role} esp \\')
    lines.extend(f"\t{item} \\" for item in body[:-1])
    lines.append(f"\t{body[-1]}")
    return "\n".join(lines) + "\n"
