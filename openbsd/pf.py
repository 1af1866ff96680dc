"""``pf.conf`` for one gateway: block by default, then narrow passes.

A cloud gateway has one interface (``egress``): IKE and ESP from the peer arrive on it,
and so does the workload traffic that the cloud's route tables send to it. Traffic between
the local and remote networks is only ever passed on ``enc0``, the IPsec side; on ``egress``
any packet for a remote network is blocked, so nothing leaks in the clear while no SA
exists (iked installs no flows before one does).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

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


def _table(name: str, cidrs: Sequence[str]) -> str:
    for cidr in cidrs:
        ipaddress.IPv4Network(cidr)
    return f"table <{name}> const {{ {' '.join(cidrs)} }}"


def render_pf_conf(gw: PfGateway) -> str:
    """The whole ``/etc/pf.conf`` of one gateway (check with ``pfctl -nf`` before loading)."""
    ipaddress.IPv4Address(gw.private_ip)
    ipaddress.IPv4Address(gw.peer_public_ip)
    if not (gw.local_cidrs and gw.remote_cidrs and gw.admin_cidrs):
        raise ValueError("pf.conf needs local, remote and admin CIDRs")
    return "\n".join(
        [
            "# Rendered by cross-cloud-vpn; edits are overwritten on the next `pulumi up`.",
            f'gw = "{gw.private_ip}"',
            f'peer = "{gw.peer_public_ip}"',
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
            "",
            "# IKE and NAT-T from the peer only. The cloud maps our public IP 1:1 to $gw. No rule",
            "# for raw ESP (proto 50): behind 1:1 NAT iked detects the NAT (NAT-D payloads) and both",
            "# sides move IKE and ESP to UDP 4500 (NAT-T), so raw ESP never arrives here.",
            "pass in on egress inet proto udp from $peer to $gw port { isakmp ipsec-nat-t }",
            "",
            "pass in on egress inet proto tcp from <admin_nets> to $gw port ssh",
            "",
            "# Workload traffic the route tables send here goes out only through IPsec (enc0).",
            "pass in on egress inet from <local_nets> to <remote_nets>",
            "pass out on enc0 inet from <local_nets> to <remote_nets>",
            "pass in on enc0 inet from <remote_nets> to <local_nets>",
            "pass out on egress inet from <remote_nets> to <local_nets>",
            "",
            "# The gateway's own traffic (IKE and NAT-T to the peer, DNS, NTP, packages, agents).",
            "pass out on egress inet from $gw",
            "",
        ]
    )
