"""``pf.conf`` for one gateway: block by default, then narrow passes.

A cloud gateway has one interface (``egress``): IKE and ESP from the peer arrive on it,
and so does the workload traffic that the cloud's route tables send to it. Traffic between
the local and remote networks is only ever passed on ``enc0``, the IPsec side; on ``egress``
any packet for a remote network is blocked, so nothing leaks in the clear while no SA
exists (iked installs no flows before one does).

High availability (issue 13; ``bgp_peer_private_ip`` set, off by default so a single gateway's
text is unchanged): two pairs of gateways, and the two clouds choose a pair per flow on their
own (AWS: the route server's best path; Azure: the load balancer's 5-tuple hash), so one
gateway may see only one direction of a flow (research/ha.md section 2.5). Then the transit
rules pass ``no state`` (a state would need both directions); the BGP session to the peer
gateway passes only on ``enc0`` and anything for the peer gateway's private address is blocked
on ``egress``; an Azure gateway also takes the load balancer's health probe (``probe_port``,
answered by ``openbsd/probe.py``'s httpd only while that BGP session is up). pf does not run on
Linux: ``tests/test_openbsd_pf.py`` pins the rendered text's structure, not pf's reading of it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from .probe import AZURE_PROBE_SOURCE, check_probe_port

PF_CONF_PATH = "/etc/pf.conf"
PF_CONF_MODE = 0o600
#: TCP MSS for tunnelled traffic: the cloud paths are 1500 bytes, minus IP, UDP (NAT-T),
#: ESP and AES overhead; 1350 is also what Azure recommends for VPN traffic.
TUNNEL_MAX_MSS = 1350


@dataclass(frozen=True)
class PfGateway:
    """Everything one gateway's ``pf.conf`` depends on."""

    private_ip: str
    peer_public_ip: str
    local_cidrs: Sequence[str]
    remote_cidrs: Sequence[str]
    admin_cidrs: Sequence[str]
    max_mss: int = TUNNEL_MAX_MSS
    #: HA mode: the private IP of the other cloud's gateway of this pair, whose BGP session runs
    #: through the tunnel (``IkedGateway.bgp_peer_private_ip``, ``BgpdGateway.peer_private_ip``).
    bgp_peer_private_ip: str | None = None
    #: HA mode, Azure gateways: the port the internal load balancer's health probe asks; AWS
    #: gateways steering route tables themselves: the port their partner's probe asks.
    probe_port: int | None = None
    #: Where that probe comes from: the Azure load balancer (default), or, in AWS route-table
    #: steering (``openbsd/steer.py``), the other AWS gateway of this side (its private IP).
    probe_source: str = AZURE_PROBE_SOURCE


def _table(name: str, cidrs: Sequence[str]) -> str:
    for cidr in cidrs:
        ipaddress.IPv4Network(cidr)
    return f"table <{name}> const {{ {' '.join(cidrs)} }}"


def _check_ha(gw: PfGateway) -> None:
    if gw.bgp_peer_private_ip is None:
        if gw.probe_port is not None:
            raise ValueError("probe_port needs bgp_peer_private_ip: the probe follows the BGP session")
        return
    try:
        peer_gw = ipaddress.IPv4Address(gw.bgp_peer_private_ip)
    except ValueError:
        raise ValueError(f"bgp_peer_private_ip {gw.bgp_peer_private_ip!r} is not an IPv4 address") from None
    if peer_gw == ipaddress.IPv4Address(gw.private_ip):
        raise ValueError("bgp_peer_private_ip is this gateway's own private IP")
    if any(peer_gw in ipaddress.IPv4Network(c) for c in gw.local_cidrs):
        raise ValueError(f"bgp_peer_private_ip {peer_gw} is in local_cidrs: it is the other cloud's")
    if gw.probe_port is not None:
        check_probe_port(gw.probe_port)
    try:
        source = ipaddress.IPv4Address(gw.probe_source)
    except ValueError:
        raise ValueError(f"probe_source {gw.probe_source!r} is not an IPv4 address") from None
    if source in (ipaddress.IPv4Address(gw.private_ip), peer_gw):
        raise ValueError("probe_source must be the load balancer or the partner gateway, "
                         "not this gateway nor its tunnel peer")


def render_pf_conf(gw: PfGateway) -> str:
    """The whole ``/etc/pf.conf`` of one gateway (check with ``pfctl -nf`` before loading)."""
    ipaddress.IPv4Address(gw.private_ip)
    ipaddress.IPv4Address(gw.peer_public_ip)
    if not (gw.local_cidrs and gw.remote_cidrs and gw.admin_cidrs):
        raise ValueError("pf.conf needs local, remote and admin CIDRs")
    _check_ha(gw)
    ha = gw.bgp_peer_private_ip is not None
    probe = gw.probe_port is not None
    partner_probe = probe and gw.probe_source != AZURE_PROBE_SOURCE
    lines = [
        "# Rendered by cross-cloud-vpn; edits are overwritten on the next `pulumi up`.",
        f'gw = "{gw.private_ip}"',
        f'peer = "{gw.peer_public_ip}"',
    ]
    if ha:
        lines.append(f'peer_gw = "{gw.bgp_peer_private_ip}"')
    if partner_probe:
        lines.append(f'partner_gw = "{gw.probe_source}"')
    elif probe:
        lines.append(f'lb_probe = "{AZURE_PROBE_SOURCE}"')
    lines += [
        _table("local_nets", gw.local_cidrs),
        _table("remote_nets", gw.remote_cidrs),
        _table("admin_nets", gw.admin_cidrs),
        "",
        "set skip on lo",
        "set block-policy drop",
        "# A state belongs to the interface that made it. By default states float (pf.conf(5):",
        '# "States can match packets on any interfaces"; pf.c pf_find_state() takes a state',
        "# whose kif is pfi_all on any interface): the state of a flow passed out on enc0 would",
        "# then pass that flow out on egress, in the clear, once iked drops its SAs (restart,",
        "# DPD), past the quick block below. Bound to enc0 it cannot.",
        "set state-policy if-bound",
        "# Tunnelled TCP must fit the 1500-byte cloud path after NAT-T and ESP overhead.",
        f"match on enc0 all scrub (max-mss {gw.max_mss})",
        "",
        "block log all",
        "",
        "# Without an SA iked installs no flow, and such a packet would leave in the clear.",
        "block out log quick on egress inet to <remote_nets>",
    ]
    if ha:
        lines += [
            "# HA: the peer gateway's private address is reached only through the tunnel (iked.conf's",
            "# host flow carries the BGP session). With no SA, BGP would leave here in the clear,",
            "# passed by the gateway's own rule below: nothing for $peer_gw leaves on egress.",
            "block out log quick on egress inet to $peer_gw",
        ]
    lines += [
        "",
        "# IKE and NAT-T from the peer only. The cloud maps our public IP 1:1 to $gw. No rule",
        "# for raw ESP (proto 50): behind 1:1 NAT iked detects the NAT (NAT-D payloads) and both",
        "# sides move IKE and ESP to UDP 4500 (NAT-T), so raw ESP never arrives here.",
        "pass in on egress inet proto udp from $peer to $gw port { isakmp ipsec-nat-t }",
        "",
        "pass in on egress inet proto tcp from <admin_nets> to $gw port ssh",
        "",
    ]
    if partner_probe:
        lines += [
            "# HA, AWS route-table steering: the other AWS gateway of this side asks this one's probe",
            "# responder (httpd answers 200 only while the BGP session through this gateway's tunnel is",
            "# up, openbsd/probe.py) before it takes the routes over (openbsd/steer.py); no one else may.",
            f"pass in on egress inet proto tcp from $partner_gw to $gw port {gw.probe_port}",
            "",
        ]
    elif probe:
        lines += [
            "# HA, Azure: the internal load balancer's health probe always comes from 168.63.129.16",
            "# (research/ha.md section 1b). httpd answers 200 only while the BGP session through this",
            "# gateway's tunnel is up (openbsd/probe.py); otherwise the balancer sends flows elsewhere.",
            f"pass in on egress inet proto tcp from $lb_probe to $gw port {gw.probe_port}",
            "",
        ]
    if ha:
        lines += [
            "# HA: BGP (tcp 179) with the peer gateway, only inside the tunnel. Both sides connect",
            "# (neither is passive). Its packets take the same tunnel both ways, so it keeps state.",
            "pass out on enc0 inet proto tcp from $gw to $peer_gw port 179",
            "pass in on enc0 inet proto tcp from $peer_gw to $gw port 179",
            "",
            "# Workload traffic the route tables send here goes out only through IPsec (enc0).",
            "# HA: no state. Each cloud picks a pair per flow by itself, so this gateway may carry one",
            "# direction of a flow and the other pair the other (research/ha.md section 2.5); a",
            "# stateful rule would drop a reply, or a TCP SYN-ACK, whose first packet it never saw.",
            "# pf.conf(5) `no state`: every packet is matched against the rules, so each one still",
            "# passes only these interfaces and tables, and the match rule still clamps MSS; pfctl's",
            "# parse.y adds its default `flags S/SA` only to stateful rules, so mid-flow TCP passes.",
        ]
    else:
        lines.append("# Workload traffic the route tables send here goes out only through IPsec (enc0).")
    transit = " no state" if ha else ""
    lines += [
        f"pass in on egress inet from <local_nets> to <remote_nets>{transit}",
        f"pass out on enc0 inet from <local_nets> to <remote_nets>{transit}",
        f"pass in on enc0 inet from <remote_nets> to <local_nets>{transit}",
        f"pass out on egress inet from <remote_nets> to <local_nets>{transit}",
        "",
        "# The gateway's own traffic (IKE and NAT-T to the peer, DNS, NTP, packages, agents).",
    ]
    if ha and gw.probe_port is None:
        lines.append("# HA, AWS: also BGP to the route server endpoints in this subnet (they never connect).")
    lines += [
        "pass out on egress inet from $gw",
        "",
    ]
    return "\n".join(lines)
