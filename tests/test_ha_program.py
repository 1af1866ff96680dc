"""HA mode, the whole program: `ha.enabled` on the dev stack, registered by the real Pulumi SDK.

Two gateways per side in two zones, one tunnel each (A1<->B1, A2<->B2), each tunnel carrying a
BGP session; AWS steered by the gateways' own route writes (default) or by VPC Route Server,
Azure by an internal load balancer's probe. What the program pushes to each gateway is read
back out of the bootstrap it would send, and checked with the real parsers where Linux has them
(iked -n, bgpd -n).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from cross_cloud_vpn.lab_cloud import DEFAULT_LOOKUPS, Evaluation, Registration, evaluate
from cross_cloud_vpn.openbsd import parse_bootstrap
from cross_cloud_vpn.openbsd.steer import STEER_RC_PATH, STEER_SCRIPT_PATH
from cross_cloud_vpn.program import build
from tests.test_program_mocks import _closure

P = "cross-cloud-vpn:"
SECRET_KEYS = {P + "sshPrivateKey", P + "psk"}
SITES = ("aws-1", "aws-2", "azure-1", "azure-2")
#: What the lab cloud answers for the lookups HA mode makes through the AWS provider.
LOOKUPS = {
    "aws:index/getAvailabilityZones:getAvailabilityZones": {
        "names": ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
        "zoneIds": ["euw1-az1", "euw1-az2", "euw1-az3"],
        "id": "eu-west-1",
    },
    "aws:index/getRegion:getRegion": {"name": "eu-west-1", "region": "eu-west-1", "id": "eu-west-1"},
    "aws:index/getCallerIdentity:getCallerIdentity": {
        "accountId": "123456789012", "arn": "arn:aws:iam::123456789012:user/ci", "userId": "AIDA", "id": "1",
    },
}


@pytest.fixture()
def run_ha(dev_config: tuple[dict[str, str], set[str]], iked_public_keys: dict[str, str]
           ) -> Callable[..., Evaluation]:
    keys = {site: iked_public_keys[site.split("-")[0]] for site in SITES} | dict(iked_public_keys)

    def runner(steering: str = "route-tables", preview: bool = False,
               previous: Evaluation | None = None, replace: tuple[tuple[str, str], ...] = (),
               lookups: dict[str, dict[str, object]] | None = None,
               top: dict[str, str] | None = None, ha: bool = True, **aws: object) -> Evaluation:
        values = dict(dev_config[0])
        values.update({P + k: v for k, v in (top or {}).items()})
        if ha:
            values[P + "ha"] = json.dumps({"enabled": True, "awsSteering": steering})
            side = json.loads(values[P + "aws"])
            side.update({"secondGatewaySubnetCidr": "10.10.2.0/24", **aws})
            values[P + "aws"] = json.dumps(side)
        return evaluate(build, values, SECRET_KEYS, preview=preview, public_keys=keys,
                        lookups={**LOOKUPS, **(lookups or {})}, previous=previous, replace=replace)

    return runner


def files_of(ev: Evaluation, site: str) -> dict[str, tuple[str, int]]:
    configures = [r for r in ev.resources if r.name.endswith(f"-{site}-configure")]
    assert len(configures) == 1, [r.name for r in configures]
    return parse_bootstrap(configures[0].inputs["stdin"]).files


def _parser_accepts(command: str, text: str, tmp_path: Path, name: str) -> tuple[bool, str]:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    result = subprocess.run([shutil.which(command) or f"/usr/sbin/{command}", "-n", "-f", str(path)],
                            capture_output=True, text=True, timeout=30)
    return result.returncode == 0, result.stderr + result.stdout


# --- two gateways per side, two zones --------------------------------------------------------

def test_ha_registers_two_gateways_per_side_in_two_zones(run_ha: Callable[..., Evaluation]) -> None:
    ev = run_ha()
    gateways = [r for r in ev.by_type("aws:ec2/instance:Instance") if "test-vm" not in r.name]
    assert len(gateways) == 2
    subnets = {r.id: r for r in ev.by_type("aws:ec2/subnet:Subnet")}
    # Gateway 1's subnet keeps the zone AWS picks (as in single mode); gateway 2's is another.
    first, second = (subnets[gw.inputs["subnetId"]] for gw in sorted(gateways, key=lambda g: g.name))
    assert first.inputs.get("availabilityZone") is None
    assert second.inputs["availabilityZone"] not in (None, first.state["availabilityZone"])
    vms = [r for r in ev.by_type("azure-native:compute:VirtualMachine") if "test-vm" not in r.name]
    assert len(vms) == 2
    assert sorted(tuple(vm.inputs.get("zones") or ()) for vm in vms) == [("1",), ("2",)]


def test_ha_exports_every_gateway_in_tunnel_order(run_ha: Callable[..., Evaluation]) -> None:
    ev = run_ha()
    assert len(ev.outputs["aws_public_ips"]) == 2 and len(ev.outputs["azure_public_ips"]) == 2
    assert ev.outputs["azure_load_balancer_ip"] == "10.20.0.12"
    assert ev.outputs["azure_gateway_private_ips"] == ["10.20.0.10", "10.20.0.11"]
    assert ev.outputs["aws_gateway_private_ips"] == ["10.10.0.10", "10.10.2.10"]
    assert len(ev.outputs["ssh_aws"]) == 2
    assert "aws_iked_confs" in ev.secret_outputs or all(
        "ikev2" in conf for conf in ev.outputs["aws_iked_confs"])


def test_each_tunnel_joins_gateway_n_to_gateway_n_and_carries_its_bgp_session(
    run_ha: Callable[..., Evaluation], tmp_path: Path
) -> None:
    ev = run_ha()
    private = {"aws-1": "10.10.0.10", "aws-2": "10.10.2.10", "azure-1": "10.20.0.10", "azure-2": "10.20.0.11"}
    peer = {"aws-1": "azure-1", "aws-2": "azure-2", "azure-1": "aws-1", "azure-2": "aws-2"}
    for site in SITES:
        files = files_of(ev, site)
        iked = files["/etc/iked.conf"][0]
        # The BGP host flow between the pair's two private addresses rides the tunnel.
        assert f"from {private[site]} to {private[peer[site]]}" in iked, iked
        ok, err = _parser_accepts("iked", iked, tmp_path, f"{site}-iked.conf")
        assert ok, err
        bgpd = files["/etc/bgpd.conf"][0]
        assert f"neighbor {private[peer[site]]} {{" in bgpd
        ok, err = _parser_accepts("bgpd", bgpd, tmp_path, f"{site}-bgpd.conf")
        assert ok, err
        assert f"AS {65010 if site.startswith('aws') else 65020}" in bgpd


def test_azure_gateways_answer_the_load_balancer_probe(run_ha: Callable[..., Evaluation]) -> None:
    ev = run_ha()
    for site in ("azure-1", "azure-2"):
        files = files_of(ev, site)
        assert {"/etc/ifstated.conf", "/etc/httpd.conf"} <= set(files)
        assert "port 8080" in files["/etc/httpd.conf"][0]
        assert "168.63.129.16" in files["/etc/pf.conf"][0]
    lbs = ev.by_type("azure-native:network:LoadBalancer")
    assert len(lbs) == 1
    routes = [r for r in ev.by_type("azure-native:network:Route")]
    assert routes and {r.inputs["nextHopIpAddress"] for r in routes} == {"10.20.0.12"}


# --- AWS steering ------------------------------------------------------------------------------

def _remote_routes(ev: Evaluation) -> list[Registration]:
    routes = ev.by_type("aws:ec2/route:Route")
    return [r for r in routes if r.inputs.get("destinationCidrBlock") != "0.0.0.0/0"]


def test_route_server_steering_replaces_the_static_routes(run_ha: Callable[..., Evaluation]) -> None:
    ev = run_ha(steering="route-server")
    assert not _remote_routes(ev), "a static route would fight the route server's"
    assert len(ev.by_type("aws:vpc/routeServer:RouteServer")) == 1
    assert len(ev.by_type("aws:vpc/routeServerEndpoint:RouteServerEndpoint")) == 2
    assert len(ev.by_type("aws:vpc/routeServerPeer:RouteServerPeer")) == 2
    assert ev.by_type("aws:vpc/routeServerPropagation:RouteServerPropagation")
    server = ev.by_type("aws:vpc/routeServer:RouteServer")[0].id
    endpoints = {r.id for r in ev.by_type("aws:vpc/routeServerEndpoint:RouteServerEndpoint")}
    for kind in ("routeServerVpcAssociation:RouteServerVpcAssociation",
                 "routeServerPropagation:RouteServerPropagation"):
        assert {r.inputs["routeServerId"] for r in ev.by_type(f"aws:vpc/{kind}")} == {server}
    assert {r.inputs["routeServerEndpointId"] for r in ev.by_type("aws:vpc/routeServerPeer:RouteServerPeer")
            } == endpoints
    for n, site in enumerate(("aws-1", "aws-2")):
        bgpd = files_of(ev, site)["/etc/bgpd.conf"][0]
        assert 'group "route-servers"' in bgpd and "remote-as 65000" in bgpd
        assert ("prepend-self" in bgpd) == (n == 1), "only the second gateway is the standby"


def test_route_table_steering_keeps_its_routes_out_of_pulumis_way(run_ha: Callable[..., Evaluation]) -> None:
    ev = run_ha()
    routes = _remote_routes(ev)
    assert routes and all("networkInterfaceId" in (r.ignore_changes or []) for r in routes), [
        (r.name, r.ignore_changes) for r in routes]
    assert not ev.by_type("aws:vpc/routeServer:RouteServer")
    policies = ev.by_type("aws:iam/rolePolicy:RolePolicy")
    assert len(policies) == 1
    statements = json.loads(policies[0].inputs["policy"])["Statement"]
    actions = {a for s in statements for a in _listed(s["Action"])}
    assert actions == {"ec2:ReplaceRoute", "ec2:CreateRoute", "ec2:DescribeRouteTables"}
    for s in statements:
        if "ec2:ReplaceRoute" in _listed(s["Action"]):
            assert all(":route-table/" in r for r in _listed(s["Resource"])), s


def test_route_table_steering_installs_the_loop_on_both_aws_gateways(
    run_ha: Callable[..., Evaluation]
) -> None:
    ev = run_ha()
    tables = sorted(r.id for r in ev.by_type("aws:ec2/routeTable:RouteTable") if "workload" in r.name)
    partner = {"aws-1": "10.10.2.10", "aws-2": "10.10.0.10"}
    for site, role in (("aws-1", "primary"), ("aws-2", "standby")):
        files = files_of(ev, site)
        script = files[STEER_SCRIPT_PATH][0]
        assert f"role='{role}'" in script
        assert f"tables='{' '.join(tables)}'" in script and "region='eu-west-1'" in script
        assert "cidrs='10.20.1.0/24'" in script
        assert f"partner_url='http://{partner[site]}:8080/up'" in script
        assert STEER_RC_PATH in files and {"/etc/ifstated.conf", "/etc/httpd.conf"} <= set(files)
        # pf lets only the partner gateway ask this one's probe responder.
        assert partner[site] in files["/etc/pf.conf"][0]
        assert "168.63.129.16" not in files["/etc/pf.conf"][0]
    for site in ("azure-1", "azure-2"):
        assert STEER_SCRIPT_PATH not in files_of(ev, site)


def test_route_server_steering_installs_no_steering_loop(run_ha: Callable[..., Evaluation]) -> None:
    ev = run_ha(steering="route-server")
    for site in ("aws-1", "aws-2"):
        assert STEER_SCRIPT_PATH not in files_of(ev, site)


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


# --- independence and lifecycle ----------------------------------------------------------------

def test_no_gateway_of_one_cloud_waits_for_the_other_in_ha_mode(run_ha: Callable[..., Evaluation]) -> None:
    ev = run_ha()
    machines = ev.by_type("aws:ec2/instance:Instance") + ev.by_type("azure-native:compute:VirtualMachine")
    assert len(machines) == 6  # two gateways and a test VM per side
    by_urn = {r.urn: r for r in ev.resources}
    for machine in machines:
        other = "azure-native:" if machine.type.startswith("aws:") else "aws:"
        crossed = [u for u in _closure(ev, machine) if by_urn[u].type.startswith(other)]
        assert not crossed, f"{machine.urn} waits for {crossed}"


@pytest.mark.parametrize("steering", ["route-tables", "route-server"])
def test_a_second_ha_up_with_nothing_changed_changes_nothing(
    run_ha: Callable[..., Evaluation], steering: str
) -> None:
    first = run_ha(steering=steering)
    again = run_ha(steering=steering, previous=first)
    assert again.changes() == {}


def test_replacing_one_gateway_reconfigures_only_its_tunnel(run_ha: Callable[..., Evaluation]) -> None:
    first = run_ha()
    gateway_2 = next(r for r in first.by_type("aws:ec2/instance:Instance") if r.name.endswith("-gateway-2"))
    again = run_ha(previous=first, replace=((gateway_2.type, gateway_2.name),))
    changed = {name for (_, name), action in again.changes().items() if action != "same"}
    commands = {n for n in changed if n.endswith(("-configure", "-pubkey", "-wait-ssh", "-check"))}
    assert commands, changed
    assert all("-tunnel-2-" in n for n in commands), commands
    assert any(n.endswith("-aws-2-configure") for n in commands)


def test_ha_preview_registers_the_same_resources(run_ha: Callable[..., Evaluation]) -> None:
    update, preview = run_ha(), run_ha(preview=True)
    assert sorted((r.type, r.name) for r in preview.resources) == sorted(
        (r.type, r.name) for r in update.resources)


def test_a_newer_published_image_replaces_no_ha_gateway(run_ha: Callable[..., Evaluation]) -> None:
    first = run_ha()
    newer = {**DEFAULT_LOOKUPS["aws:ec2/getAmi:getAmi"], "id": "ami-0fedcba9876543210"}
    again = run_ha(previous=first, lookups={"aws:ec2/getAmi:getAmi": newer})
    assert again.changes() == {}, again.changes()


@pytest.mark.parametrize("steering", ["route-tables", "route-server"])
def test_an_admin_cidr_added_in_ha_mode_touches_only_its_own_resources(
    run_ha: Callable[..., Evaluation], steering: str
) -> None:
    first = run_ha(steering=steering)
    again = run_ha(steering=steering, previous=first,
                   top={"adminCidrs": json.dumps(["192.0.2.0/24", "198.51.100.128/25"])})
    changes = {k: v for k, v in again.changes().items() if not k[0].startswith("command:")}
    assert changes == {
        ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "ccvpn-dev-aws-ssh-198-51-100-128-25"):
            "create",
        # One NSG per Azure gateway, each with one SSH rule holding the whole list.
        **{k: "update" for k in changes if k[0] == "azure-native:network:SecurityRule"},
    }, changes
    assert len([k for k in changes if k[0] == "azure-native:network:SecurityRule"]) in (1, 2)
    # Each gateway gets its new pf.conf and is checked again; no machine is touched.
    steps = {k[1]: v for k, v in again.changes().items() if k[0] == "command:remote:Command"}
    gateways = [f"ccvpn-dev-tunnel-{n}-{side}-{n}" for n in (1, 2) for side in ("aws", "azure")]
    assert {f"{g}-configure" for g in gateways} | {f"{g}-check" for g in gateways} == set(steps), steps
    assert not [k for k, v in again.changes().items() if v == "replace" and not k[0].startswith("command:")]


def test_turning_ha_off_replaces_the_zonal_azure_gateway_instead_of_an_update_azure_refuses(
    run_ha: Callable[..., Evaluation]
) -> None:
    first = run_ha()
    single = run_ha(previous=first, ha=False)
    changes = single.changes()
    # Azure cannot take a zone off a VM or a public IP ("Changing property 'zones' is not allowed").
    for typ in ("azure-native:compute:VirtualMachine", "azure-native:network:PublicIPAddress"):
        assert changes[(typ, "ccvpn-dev-azure-gateway" if "Virtual" in typ else "ccvpn-dev-azure-gateway-ip")
                       ] == "replace", changes
    # AWS's gateway 1 stays: its subnet keeps the zone AWS picked, with or without HA.
    assert ("aws:ec2/instance:Instance", "ccvpn-dev-aws-gateway") not in changes
    # The second gateway of each side, the load balancer and the steering go away.
    assert changes[("aws:ec2/instance:Instance", "ccvpn-dev-aws-gateway-2")] == "delete"
    assert changes[("azure-native:network:LoadBalancer", "ccvpn-dev-azure-ilb")] == "delete"
