"""``bgpd.conf`` for one gateway of a high-availability pair: a pure function of plain values.

In HA mode each AWS gateway has its own tunnel to one Azure gateway (A1<->B1, A2<->B2), and the
two gateways of a pair run an OpenBGPD session to each other's private address *through that
tunnel* (iked.conf carries one extra host flow for it: ``IkedGateway.bgp_peer_private_ip``). A
gateway holds the other cloud's prefixes only while that session is up, so the health of its
tunnel becomes a routing fact that the cloud's steering (AWS VPC Route Server; the Azure load
balancer's probe) can follow.

``fib-update no``: the IPsec flows forward the traffic, BGP routes are only the signal, never
installed in the kernel. Optionally the gateway re-announces the remote prefixes, never its own
side's, to a group of route servers (the AWS VPC Route Server endpoints, which never open the
session themselves); a standby gateway prepends its AS so the route servers prefer the primary.
Nothing is accepted from the route servers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

BGPD_CONF_PATH = "/etc/bgpd.conf"
#: bgpd refuses a world-readable bgpd.conf only when it holds secrets; this one has none, but
#: the daemon's own examples install it 0600 and so does this project.
BGPD_CONF_MODE = 0o600
#: The shortest hold time OpenBGPD takes: bgpd.conf(5), `holdtime min`: "This value must be at
#: least 3." (parse.y: MIN_HOLDTIME 3; `holdtime 2` fails `bgpd -n`). Keepalives go out every
#: holdtime/3 s, so a silent tunnel is noticed within 3 s.
MIN_HOLDTIME = 3
#: Hold time offered to the route servers. AWS does not document the shortest it accepts (see
#: the README's "High availability" section), so this is a proposal the session negotiates down
#: from; RFC 4271 takes the smaller of the two offers.
DEFAULT_ROUTE_SERVER_HOLDTIME = 9
#: How many times a standby gateway prepends its own AS toward the route servers.
STANDBY_PREPEND = 2


@dataclass(frozen=True)
class RouteServers:
    """The route servers a gateway re-announces the remote prefixes to (AWS: the endpoints'
    ``eni_address``), all in one AS."""

    addresses: Sequence[str]
    remote_as: int
    holdtime: int = DEFAULT_ROUTE_SERVER_HOLDTIME
    standby: bool = False


@dataclass(frozen=True)
class BgpdGateway:
    """Everything one HA gateway's ``bgpd.conf`` depends on."""

    local_as: int
    local_private_ip: str
    peer_as: int
    peer_private_ip: str
    local_cidrs: Sequence[str]
    remote_cidrs: Sequence[str]
    peer_description: str = "peer gateway over the tunnel"
    holdtime: int = MIN_HOLDTIME
    route_servers: RouteServers | None = None


def _as_number(label: str, value: int) -> None:
    if not 1 <= value <= 4294967295:
        raise ValueError(f"{label} {value} is not an AS number (1 to 4294967295)")


def _check(gw: BgpdGateway) -> None:
    addresses = (("local_private_ip", gw.local_private_ip), ("peer_private_ip", gw.peer_private_ip))
    for label, address in addresses:
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise ValueError(f"{label} {address!r} is not an IPv4 address") from None
    if gw.local_private_ip == gw.peer_private_ip:
        raise ValueError("local_private_ip and peer_private_ip are the same address")
    _as_number("local_as", gw.local_as)
    _as_number("peer_as", gw.peer_as)
    if gw.local_as == gw.peer_as:
        raise ValueError(f"local_as and peer_as are both {gw.local_as}: the pair runs eBGP, one AS per cloud")
    if not gw.local_cidrs or not gw.remote_cidrs:
        raise ValueError("bgpd.conf needs at least one local and one remote CIDR")
    local = [ipaddress.IPv4Network(c) for c in gw.local_cidrs]
    remote = [ipaddress.IPv4Network(c) for c in gw.remote_cidrs]
    if any(a.overlaps(b) for a in local for b in remote):
        raise ValueError("local_cidrs and remote_cidrs overlap")
    holdtimes = [("holdtime", gw.holdtime)]
    rs = gw.route_servers
    if rs is not None:
        holdtimes.append(("route_servers.holdtime", rs.holdtime))
        _as_number("route_servers.remote_as", rs.remote_as)
        if rs.remote_as in (gw.local_as, gw.peer_as):
            raise ValueError(f"route_servers.remote_as {rs.remote_as} must differ from both gateways' AS")
        if not rs.addresses:
            raise ValueError("route_servers needs at least one address")
        for address in rs.addresses:
            ipaddress.IPv4Address(address)
        if len(set(rs.addresses)) != len(rs.addresses) or gw.peer_private_ip in rs.addresses:
            raise ValueError("route_servers.addresses repeat an address or name the peer gateway")
    for label, seconds in holdtimes:
        if not MIN_HOLDTIME <= seconds <= 65535:
            raise ValueError(f"{label} {seconds} is outside {MIN_HOLDTIME}..65535 (bgpd.conf(5))")


def _cidr_set(cidrs: Sequence[str]) -> str:
    return " ".join(str(ipaddress.IPv4Network(c)) for c in cidrs)


def render_bgpd_conf(gw: BgpdGateway) -> str:
    """The whole ``/etc/bgpd.conf`` of one HA gateway (install it 0600, owner root)."""
    _check(gw)
    me, peer = gw.local_private_ip, gw.peer_private_ip
    lines = [
        "# Rendered by cross-cloud-vpn; edits are overwritten on the next `pulumi up`.",
        "# The session to the peer gateway runs through the IPsec tunnel (iked.conf's host flow",
        "# between the two private addresses): the remote prefixes are held only while it is up.",
        f"AS {gw.local_as}",
        f"router-id {me}",
        "# The IPsec flows forward the traffic; BGP routes are only the steering signal.",
        "fib-update no",
        "# The peer's private address is reached only through the default route (into the tunnel).",
        "nexthop qualify via default",
        "connect-retry 5",
        "",
        f"prefix-set local_nets {{ {_cidr_set(gw.local_cidrs)} }}",
        f"prefix-set remote_nets {{ {_cidr_set(gw.remote_cidrs)} }}",
        "network prefix-set local_nets",
        "",
        f"neighbor {peer} {{",
        f'\tdescr "{gw.peer_description}"',
        f"\tremote-as {gw.peer_as}",
        "\t# one routed hop away (the other cloud's gateway subnet), never directly connected",
        "\tmultihop 2",
        f"\t# keepalive every {gw.holdtime // 3} s: a dead tunnel drops the session in {gw.holdtime} s",
        f"\tholdtime {gw.holdtime}",
        f"\tholdtime min {gw.holdtime}",
        f"\tlocal-address {me}",
        "}",
    ]
    rs = gw.route_servers
    if rs is not None:
        lines += [
            "",
            "# The cloud's route servers never open the session: this gateway does.",
            'group "route-servers" {',
            f"\tremote-as {rs.remote_as}",
            f"\tholdtime {rs.holdtime}",
            f"\tlocal-address {me}",
            *(f'\tneighbor {address} {{ descr "route server {n}" }}' for n, address in
              enumerate(rs.addresses, start=1)),
            "}",
        ]
    lines += [
        "",
        "# bgpd.conf(5): the filter denies every UPDATE no rule allows.",
        f"allow from {peer} prefix-set remote_nets",
        f"allow to {peer} prefix-set local_nets",
    ]
    if rs is not None:
        lines += [
            "# Nothing is taken from the route servers; they get only what is reachable through",
            "# this gateway's tunnel, never this side's own networks.",
            'deny from group "route-servers"',
            'allow to group "route-servers" prefix-set remote_nets',
        ]
        if rs.standby:
            lines += [
                "# Standby: a longer AS path; the route servers prefer the primary while it has the routes.",
                f'match to group "route-servers" set prepend-self {STANDBY_PREPEND}',
            ]
    return "\n".join(lines) + "\n"
