"""High-availability rehearsal, host side: four gateways, two independent tunnels, real daemons.

Not the HA feature (the program has no HA mode yet): a rehearsal of its first building block with
the files ``openbsd/`` renders. Two pairs, A1<->B1 and A2<->B2, each today's policy-based iked
tunnel plus the host flow that carries an OpenBGPD session between the pair's private addresses
(``IkedGateway.bgp_peer_private_ip``, ``render_bgpd_conf``). The AWS gateways announce the Azure
prefixes they hold to a route server (A2 prepends: standby) or, with
``aws_steering="route-tables"`` (the program's default, $0), each runs the program's own steering
script (``openbsd/steer.py``) against a fake EC2 API and IMDS (:mod:`.ha_aws`); the Azure side is
steered by a probe that picks a B gateway whose BGP session is Established. Faults, one at a time, each healed
before the next; the guest (:mod:`.ha_guest`) measures the gap of a one-way UDP stream in each
direction and counts cleartext on the internet links.

``run_ha_rehearsal(workdir=..., progress=print)`` boots user-mode-linux (1 GiB) and returns the
figures; ``summary_line(result)`` is the one-line report.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..openbsd import (
    BgpdGateway,
    GatewayHa,
    GatewaySpec,
    IkedGateway,
    PubkeyAuth,
    RouteServers,
    RouteTableSteering,
    render_bgpd_conf,
    render_gateway,
    render_iked_conf,
)
from ..openbsd.bgpd import BGPD_CONF_MODE, BGPD_CONF_PATH
from ..openbsd.iked import IKED_CONF_MODE, IKED_CONF_PATH, peer_pubkey_path
from ..openbsd.steer import STEER_SCRIPT_PATH
from .keys import make_keypair
from .plan import GatewayPlan, PushedFile
from .uml import SEARCH_PATH, missing_tools, run_in_guest

AWS_AS, AZURE_AS, ROUTE_SERVER_AS = 65010, 65020, 65000
AWS_VPC_ROUTER, AZURE_VNET_ROUTER = "10.10.0.1", "10.20.0.1"
#: The AWS route server endpoint's address in the gateway subnet (the lab's stand-in listens here).
ROUTE_SERVER_IP = "10.10.0.230"
AWS_WORKLOAD, AZURE_WORKLOAD = "10.10.1.0/24", "10.20.1.0/24"
AWS_SUBNET, AZURE_SUBNET = "10.10.0.0/24", "10.20.0.0/24"
#: name -> (private IP, public IP); pair n joins An and Bn.
GATEWAYS: dict[str, tuple[str, str]] = {
    "a1": ("10.10.0.10", "198.51.100.10"),
    "a2": ("10.10.0.11", "198.51.100.11"),
    "b1": ("10.20.0.10", "203.0.113.20"),
    "b2": ("10.20.0.11", "203.0.113.21"),
}
#: The faults, in order; each is healed (and traffic fails back) before the next.
FAULTS: tuple[tuple[str, str, str], ...] = (
    ("a1_iked_stopped", "a1", "stop"),
    ("a1_link_cut", "a1", "cut"),
    ("b1_iked_stopped", "b1", "stop"),
    ("b2_link_cut", "b2", "cut"),
)
HA_TIMEOUT = 900.0
#: How the AWS side is steered: an OpenBGPD standing in for VPC Route Server, or the gateways'
#: own route-table steering script against a fake EC2 API (the program's default, $0).
AWS_STEERINGS = ("route-server", "route-tables")
#: Route-table mode: the values the program hands RouteTableSteering (region, the workload
#: route tables with EC2's id form, the partner, standby for A2; interval and misses default),
#: the probe port (``ha.probePort`` default), where the fake EC2 endpoint listens (a VPC-internal
#: address, like an interface endpoint; plain HTTP) and IMDS's own address.
AWS_REGION = "eu-west-1"
ROUTE_TABLE_IDS = ("rtb-00000000000000a01",)
PROBE_PORT = 8080
EC2_ENDPOINT_IP = "10.10.0.240"
IMDS_IP = "169.254.169.254"
#: name -> (MAC, ENI id) of each AWS gateway's one network interface.
AWS_INTERFACES: dict[str, tuple[str, str]] = {
    "a1": ("0a:1c:c0:00:00:a1", "eni-0a1c0000000000a01"),
    "a2": ("0a:1c:c0:00:00:a2", "eni-0a1c0000000000a02"),
}
HA_MEMORY = "1024M"


def peer_of(name: str) -> str:
    return ("b" if name[0] == "a" else "a") + name[1]


def partner_of(name: str) -> str:
    """The other gateway of the same side (A1 <-> A2)."""
    return name[0] + ("2" if name[1] == "1" else "1")


def route_server_conf() -> str:
    """The lab's stand-in for the AWS VPC Route Server: an OpenBGPD that never opens a session
    (the Route Server endpoint does not), takes only Azure prefixes from the AWS gateways, gives
    nothing, and picks one best path (shortest AS path: the unprepended primary)."""
    lines = [
        f"AS {ROUTE_SERVER_AS}",
        f"router-id {ROUTE_SERVER_IP}",
        f"listen on {ROUTE_SERVER_IP}",
        "fib-update no",
        f"prefix-set azure_nets {{ {AZURE_WORKLOAD} }}",
    ]
    for name in ("a1", "a2"):
        lines += [f"neighbor {GATEWAYS[name][0]} {{", f'\tdescr "{name}"', f"\tremote-as {AWS_AS}",
                  "\tpassive", "}"]
    lines += ["allow from any prefix-set azure_nets", "deny to any"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class HaPlan:
    """The four gateways (files as ``openbsd/`` renders them) and the route server's config
    (route-server mode; empty in route-tables mode, where the AWS gateways' files hold the
    steering script at ``STEER_SCRIPT_PATH``)."""

    gateways: Mapping[str, GatewayPlan]
    route_server_conf: str
    aws_steering: str = "route-server"

    def to_json(self) -> str:
        return json.dumps({"gateways": {n: g.to_dict() for n, g in self.gateways.items()},
                           "route_server_conf": self.route_server_conf, "aws_steering": self.aws_steering})

    @staticmethod
    def from_json(text: str) -> HaPlan:
        data = json.loads(text)
        return HaPlan({n: GatewayPlan.from_dict(g) for n, g in data["gateways"].items()},
                      str(data["route_server_conf"]), str(data.get("aws_steering", "route-server")))


def route_table_steering(name: str) -> RouteTableSteering:
    """What the program hands an AWS gateway in route-tables mode (components/gateway_pair.py
    ``_gateway_ha``): region, route tables, the partner's private IP, standby for A2; interval,
    misses, networks and probe port as ``render_gateway`` fills them."""
    return RouteTableSteering(region=AWS_REGION, route_table_ids=list(ROUTE_TABLE_IDS),
                              partner_private_ip=GATEWAYS[partner_of(name)][0], standby=name == "a2")


def steer_script(name: str, peer_public_pem: str) -> str:
    """The steering script exactly as the program pushes it to AWS gateway ``name``:
    ``render_gateway`` of its spec in route-tables mode, the file at ``STEER_SCRIPT_PATH``."""
    peer = peer_of(name)
    (private_ip, public_ip), (peer_private, peer_public) = GATEWAYS[name], GATEWAYS[peer]
    spec = GatewaySpec(site="aws", peer_site="azure", private_ip=private_ip, public_ip=public_ip,
                       peer_public_ip=peer_public, local_cidrs=[AWS_WORKLOAD], remote_cidrs=[AZURE_WORKLOAD],
                       admin_cidrs=["192.0.2.0/24"], auth=PubkeyAuth(), peer_public_key=peer_public_pem,
                       ha=GatewayHa(local_as=AWS_AS, peer_as=AZURE_AS, peer_private_ip=peer_private,
                                    probe_port=PROBE_PORT, route_tables=route_table_steering(name)))
    return next(f.content for f in render_gateway(spec).files if f.path == STEER_SCRIPT_PATH)


def gateway_files(
    name: str, peer_public_pem: str, aws_steering: str = "route-server"
) -> dict[str, PushedFile]:
    """What HA mode would push to one gateway: iked.conf with the BGP host flow, the peer's key,
    bgpd.conf (route-server mode: AWS gateways with the route server group, A2 the standby;
    route-tables mode: no group, and the AWS gateways get the steering script)."""
    peer = peer_of(name)
    (private_ip, public_ip), (peer_private, peer_public) = GATEWAYS[name], GATEWAYS[peer]
    aws = name[0] == "a"
    local_cidrs, remote_cidrs = [AWS_WORKLOAD], [AZURE_WORKLOAD]
    if not aws:
        local_cidrs, remote_cidrs = remote_cidrs, local_cidrs
    iked = IkedGateway(
        policy_name=f"pair{name[1]}",
        local_private_ip=private_ip,
        local_public_ip=public_ip,
        peer_public_ip=peer_public,
        local_cidrs=local_cidrs,
        remote_cidrs=remote_cidrs,
        auth=PubkeyAuth(),
        bgp_peer_private_ip=peer_private,
    )
    bgpd = BgpdGateway(
        local_as=AWS_AS if aws else AZURE_AS,
        local_private_ip=private_ip,
        peer_as=AZURE_AS if aws else AWS_AS,
        peer_private_ip=peer_private,
        local_cidrs=local_cidrs,
        remote_cidrs=remote_cidrs,
        peer_description=f"{peer.upper()} over the tunnel",
        route_servers=(RouteServers([ROUTE_SERVER_IP], ROUTE_SERVER_AS, standby=name == "a2")
                       if aws and aws_steering == "route-server" else None),
    )
    files = {
        IKED_CONF_PATH: PushedFile(render_iked_conf(iked), IKED_CONF_MODE),
        peer_pubkey_path(peer_public): PushedFile(peer_public_pem, 0o644),
        BGPD_CONF_PATH: PushedFile(render_bgpd_conf(bgpd), BGPD_CONF_MODE),
    }
    if aws and aws_steering == "route-tables":
        files[STEER_SCRIPT_PATH] = PushedFile(steer_script(name, peer_public_pem), 0o755)
    return files


def ha_plan(aws_steering: str = "route-server") -> HaPlan:
    """Fresh ECDSA P-256 keys (as OpenBSD's rc makes them) and the rendered files for A1, A2, B1, B2."""
    if aws_steering not in AWS_STEERINGS:
        raise ValueError(f"aws_steering {aws_steering!r} is not one of {AWS_STEERINGS}")
    keys = {name: make_keypair() for name in GATEWAYS}
    gateways = {}
    for name, (private_ip, public_ip) in GATEWAYS.items():
        aws = name[0] == "a"
        gateways[name] = GatewayPlan(
            name=name,
            public_ip=public_ip,
            private_ip=private_ip,
            gateway_subnet=AWS_SUBNET if aws else AZURE_SUBNET,
            workload_cidrs=(AWS_WORKLOAD if aws else AZURE_WORKLOAD,),
            files=gateway_files(name, keys[peer_of(name)][1], aws_steering),
            private_key_pem=keys[name][0],
        )
    return HaPlan(gateways, route_server_conf() if aws_steering == "route-server" else "", aws_steering)


def missing_ha_tools() -> list[str]:
    """Debian packages the HA rehearsal needs and this machine lacks."""
    missing = missing_tools()
    if shutil.which("bgpd", path=SEARCH_PATH) is None:
        missing.append("openbgpd")
    return missing


def run_ha_rehearsal(
    *,
    workdir: Path,
    progress: Callable[[str], None],
    keep_logs: bool = False,
    timeout: float = HA_TIMEOUT,
    aws_steering: str = "route-server",
) -> dict[str, Any]:
    """Boot UML, run the HA rehearsal in it, return its figures (``ok``, ``failures``, ``faults``...).
    ``aws_steering``: ``route-server`` (a route server stand-in) or ``route-tables`` (the
    program's steering script on A1/A2 against a fake EC2 API)."""
    missing = missing_ha_tools()
    if aws_steering == "route-tables" and shutil.which("curl", path=SEARCH_PATH) is None:
        missing.append("curl")
    if missing:
        return {"ok": False, "failures": [f"missing Debian packages: {' '.join(missing)}"]}
    plan = ha_plan(aws_steering)
    t0 = time.monotonic()
    progress(f"booting user-mode-linux (HA: four gateways, AWS steering {aws_steering})")
    result = run_in_guest(plan.to_json(), workdir=workdir, progress=progress, keep_logs=keep_logs,
                          timeout=timeout, module="cross_cloud_vpn.lab.ha_guest", mem=HA_MEMORY)
    result["wall_s"] = round(time.monotonic() - t0, 1)
    return result


def _s(value: object) -> str:
    return "none" if value is None else f"{value}"


def summary_line(result: Mapping[str, Any]) -> str:
    """``ha: ok failover_max_s=… per-fault …, cleartext=0`` (``FAILED`` and the failures otherwise)."""
    faults = result.get("faults") or {}
    parts = []
    for name, f in faults.items():
        parts.append(f"{name}={_s(f.get('gap_a_to_b_s'))}/{_s(f.get('gap_b_to_a_s'))}"
                     f"(back {_s(f.get('failback_a_to_b_s'))}/{_s(f.get('failback_b_to_a_s'))})")
    status = "ok" if result.get("ok") else "FAILED"
    line = (f"ha: {status} failover_max_s={_s(result.get('failover_max_s'))} per-fault a->b/b->a "
            f"{' '.join(parts) or 'none'}, cleartext={_s(result.get('cleartext'))}")
    if result.get("aws_steering"):
        line += f", steering={result['aws_steering']}"
    if not result.get("ok"):
        line += f" failures={result.get('failures')}"
    return line
