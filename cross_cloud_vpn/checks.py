"""The rules every input must keep, shared by the stack config and the components.

Pure functions of plain values (no Pulumi): each takes the values and the *labels* the caller
names them by and returns the problems as sentences, so the stack config says
``'cross-cloud-vpn:aws.vpcCidr' is ...`` and a component says ``'vpc_cidr' is ...`` from the
same rule. One copy of each rule: the stack config and the components both call these.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import struct
from collections.abc import Sequence
from itertools import combinations

#: The smallest gateway subnet: Azure and AWS both reserve the first four and the last address,
#: and the gateway takes host number :data:`GATEWAY_HOST_INDEX`.
MAX_GATEWAY_PREFIX = 28
GATEWAY_HOST_INDEX = 10
#: A user name OpenBSD's adduser(8) and both clouds' provisioning agents take.
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
#: SSH key types both clouds take for a Linux machine: AWS ImportKeyPair takes RSA and ED25519
#: (docs.aws.amazon.com/AWSEC2/latest/APIReference/API_ImportKeyPair.html); Azure takes
#: "SSH-2 RSA with a minimum length of 2048 bits" and "ED25519 keys with a fixed length of 256
#: bits" (learn.microsoft.com/azure/virtual-machines/linux/create-ssh-keys-detailed).
SSH_KEY_TYPES = ("ssh-rsa", "ssh-ed25519")
MIN_RSA_BITS = 2048

Labelled = Sequence[tuple[str, str]]
"""(label, value) pairs, the label naming where the value came from."""


def cidr_problem(label: str, value: str) -> str | None:
    """Why ``value`` is not an IPv4 network without host bits, or None."""
    try:
        ipaddress.IPv4Network(value, strict=True)
        return None
    except ValueError:
        pass
    try:
        loose = ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        return f"{label} is {value!r}, not an IPv4 CIDR; write it like '10.0.0.0/16'"
    return f"{label} is {value!r}, which has host bits set; did you mean '{loose}'?"


def cidr_list_problems(labelled: Labelled) -> list[str]:
    return [p for label, value in labelled if (p := cidr_problem(label, value))]


def _valid(labelled: Labelled) -> list[tuple[str, ipaddress.IPv4Network]]:
    return [(label, ipaddress.IPv4Network(v)) for label, v in labelled if cidr_problem(label, v) is None]


def subnet_layout_problems(outer: tuple[str, str] | None, subnets: Labelled) -> list[str]:
    """Subnets outside their VPC/VNet (``outer``), and subnets that overlap each other."""
    problems = []
    nets = _valid(subnets)
    if outer is not None and cidr_problem(*outer) is None:
        space = ipaddress.IPv4Network(outer[1])
        problems += [
            f"{label} is {str(net)!r}, outside {outer[0]} {outer[1]!r}; pick a subnet inside it"
            for label, net in nets
            if not net.subnet_of(space)
        ]
    problems += [
        f"{la} {str(a)!r} overlaps {lb} {str(b)!r}; subnets must not overlap"
        for (la, a), (lb, b) in combinations(nets, 2)
        if a.overlaps(b)
    ]
    return problems


def gateway_subnet_problem(label: str, cidr: str) -> str | None:
    """A gateway subnet too small for the clouds' reserved addresses and host .10."""
    if cidr_problem(label, cidr) is None and ipaddress.IPv4Network(cidr).prefixlen > MAX_GATEWAY_PREFIX:
        return (
            f"{label} is {cidr!r}; a gateway subnet must be /{MAX_GATEWAY_PREFIX} or larger "
            f"(the gateway takes host .{GATEWAY_HOST_INDEX})"
        )
    return None


def address_problem(label: str, value: str) -> str | None:
    try:
        ipaddress.IPv4Address(value)
        return None
    except ValueError:
        return f"{label} is {value!r}, not an IPv4 address"


def gateway_ip_problem(label: str, ip: str, subnet_label: str, subnet: str) -> str | None:
    """A fixed gateway address that is not an address, or not inside its subnet."""
    bad = address_problem(label, ip)
    if bad or cidr_problem(subnet_label, subnet):
        return bad
    if ipaddress.IPv4Address(ip) not in ipaddress.IPv4Network(subnet):
        return f"{label} is {ip!r}, outside {subnet_label} {subnet!r}"
    return None


def overlap_problems(local: Labelled, remote: Labelled) -> list[str]:
    """Pairs of networks across the two sides that overlap, each message naming both."""
    return [
        f"{la} {str(a)!r} overlaps {lb} {str(b)!r}: the two sides must use separate address ranges, "
        "or traffic cannot be routed between them"
        for la, a in _valid(local)
        for lb, b in _valid(remote)
        if a.overlaps(b)
    ]


def same_networks_problem(
    label: str, values: Sequence[str], peer_label: str, peer: Sequence[str]
) -> str | None:
    """Routes and tunnel flows disagree when a side's remote networks are not the peer's own."""
    if sorted(values) == sorted(peer):
        return None
    return (
        f"{label} is {list(values)!r} but {peer_label} is {list(peer)!r}: the networks routed to "
        "the gateway must be the ones the peer's tunnel carries; pass the same list"
    )


def admin_cidr_problems(labelled: Labelled, allow_anywhere: bool, allow_label: str) -> list[str]:
    """Invalid admin networks, and 0.0.0.0/0 without the explicit opt-in."""
    problems = cidr_list_problems(labelled)
    problems += [
        f"{label} is {str(net)!r}, which opens SSH to the whole internet; name your own network, "
        f"or set {allow_label} to true if you really mean it"
        for label, net in _valid(labelled)
        if net.prefixlen == 0 and not allow_anywhere
    ]
    return problems


def ssh_public_key_problem(label: str, key: str) -> str | None:
    """An SSH public key both clouds take: RSA of at least 2048 bits, or Ed25519."""
    parts = key.split()
    kind = parts[0] if parts else ""
    if kind not in SSH_KEY_TYPES or len(parts) < 2:
        return (
            f"{label} starts with {kind!r}; both clouds take 'ssh-rsa' (2048 bits or more) or "
            "'ssh-ed25519' keys (ssh-keygen -t ed25519)"
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        return f"{label} is not an OpenSSH public key (its second field is not base64)"
    if kind == "ssh-rsa":
        bits = _rsa_bits(blob)
        if bits is None:
            return f"{label} is not a well-formed ssh-rsa key"
        if bits < MIN_RSA_BITS:
            return f"{label} is a {bits}-bit RSA key; Azure takes {MIN_RSA_BITS} bits or more"
    return None


def _rsa_bits(blob: bytes) -> int | None:
    """The modulus size of an ssh-rsa key blob (string "ssh-rsa", mpint e, mpint n)."""
    fields: list[bytes] = []
    offset = 0
    while offset < len(blob) and len(fields) < 3:
        if offset + 4 > len(blob):
            return None
        (size,) = struct.unpack(">I", blob[offset : offset + 4])
        fields.append(blob[offset + 4 : offset + 4 + size])
        offset += 4 + size
    if len(fields) != 3 or fields[0] != b"ssh-rsa":
        return None
    return int.from_bytes(fields[2], "big").bit_length()


def user_name_problem(label: str, user: str) -> str | None:
    return None if _USER.fullmatch(user) else f"{label} is {user!r}, not a valid user name"


def roles_problem(label_a: str, role_a: str, label_b: str, role_b: str) -> str | None:
    """Roles iked takes, not both passive (then no side would start the tunnel)."""
    for label, role in ((label_a, role_a), (label_b, role_b)):
        if role not in ("active", "passive"):
            return f"{label} is {role!r}; use 'active' or 'passive'"
    if role_a == role_b == "passive":
        return (
            f"{label_a} and {label_b} are both 'passive': no side would start the tunnel; "
            "keep at least one 'active'"
        )
    return None


def dpd_problem(label: str, value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return f"{label} is {value!r}; use a whole number of seconds"
    if not 0 <= value <= 3600:
        return f"{label} is {value!r}; use 0 (off) to 3600 seconds"
    return None
