"""AwsSite with ``ha``: two gateways in two zones and the steering that follows the healthy one.

Evaluated with the real Pulumi SDK in the lab cloud (``cross_cloud_vpn.lab_cloud``). The lab
cloud knows no computed values of the route server's resources nor the instance profile's name,
so :class:`HaLabCloud` answers them the way AWS does (an endpoint's ``eniAddress`` is an address
of its subnet). What AWS does with them at run time (sessions, route programming, the gateways'
own ReplaceRoute calls) only a real deployment shows.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws
import pytest

from cross_cloud_vpn.components import AwsSite, AwsSiteArgs
from cross_cloud_vpn.components.aws_site import AwsHaSteering
from cross_cloud_vpn.components.site import ComponentInputError
from cross_cloud_vpn.lab_cloud import Evaluation, LabCloud, Registration, evaluate
from tests.test_cloud_api_rules import problems_of
from tests.test_component_checks import aws_args, refused

Program = Callable[[], dict[str, Any]]
INSTANCE = "aws:ec2/instance:Instance"
SUBNET = "aws:ec2/subnet:Subnet"
ROUTE = "aws:ec2/route:Route"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
RS = "aws:vpc/routeServer:RouteServer"
RS_ASSOCIATION = "aws:vpc/routeServerVpcAssociation:RouteServerVpcAssociation"
RS_ENDPOINT = "aws:vpc/routeServerEndpoint:RouteServerEndpoint"
RS_PEER = "aws:vpc/routeServerPeer:RouteServerPeer"
RS_PROPAGATION = "aws:vpc/routeServerPropagation:RouteServerPropagation"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
PROFILE = "aws:iam/instanceProfile:InstanceProfile"
COMPONENT = "cross-cloud-vpn:index:AwsSite"

REGION, ACCOUNT = "eu-west-1", "123456789012"
LOOKUPS: dict[str, dict[str, Any]] = {
    "aws:index/getAvailabilityZones:getAvailabilityZones": {
        "names": ["eu-west-1a", "eu-west-1b", "eu-west-1c"], "zoneIds": ["euw1-az1", "euw1-az2", "euw1-az3"],
    },
    "aws:index/getRegion:getRegion": {"region": REGION, "name": REGION},
    "aws:index/getCallerIdentity:getCallerIdentity": {"accountId": ACCOUNT},
    "aws:index/getPartition:getPartition": {"partition": "aws", "dnsSuffix": "amazonaws.com"},
}
#: The address AWS gives each route server endpoint, by endpoint name (one per gateway subnet).
ENDPOINT_ADDRESSES = {"lib-rs-gateway": "172.16.0.5", "lib-rs-gateway-2": "172.16.1.5"}
SECOND = {"second_gateway_subnet_cidr": "172.16.1.0/24", "second_gateway_private_ip": "172.16.1.10"}
BYO_TABLES = ["rtb-0aaaaaaaaaaaaaaa1", "rtb-0aaaaaaaaaaaaaaa2"]


class HaLabCloud(LabCloud):
    """The lab cloud, with the computed outputs of the HA resources the program reads."""

    def _computed(self, typ: str, name: str, inputs: dict[str, Any], n: int) -> dict[str, Any]:
        if typ == RS:
            return {"__id": f"rs-{n:08x}", "routeServerId": f"rs-{n:08x}"}
        if typ == RS_ENDPOINT:
            return {"__id": f"rse-{n:08x}", "routeServerEndpointId": f"rse-{n:08x}",
                    "eniAddress": ENDPOINT_ADDRESSES[name], "eniId": f"eni-rs{n:08x}"}
        if typ == PROFILE:
            return {"__id": f"{name}-{n:07x}", "name": f"{name}-{n:07x}"}
        return super()._computed(typ, name, inputs, n)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ha-key") / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


def ha_site_args(key: str, steering: str | None = None, site: dict[str, Any] | None = None,
                 **ha: Any) -> AwsSiteArgs:
    """The library tests' create-mode site with ``ha`` (second subnet 172.16.1.0/24, .10 fixed)."""
    ha_args = {**SECOND, **({"steering": steering} if steering else {}), **ha}
    return aws_args(key, ha={k: v for k, v in ha_args.items() if v is not None}, **(site or {}))


def second_subnet(key: str, cidr: str | None, **ha: Any) -> AwsSiteArgs:
    """An HA site whose second gateway subnet is ``cidr`` (no fixed second IP)."""
    return ha_site_args(key, second_gateway_subnet_cidr=cidr, second_gateway_private_ip=None, **ha)


def byo_args(key: str, steering: str, **ha: Any) -> AwsSiteArgs:
    """Bring your own VPC, two workload route tables."""
    return aws_args(key, vpc_cidr=None, gateway_subnet_cidr=None, workload_subnet_cidrs=None,
                    gateway_private_ip=None, vpc_id="vpc-0123456789abcdef0", gateway_subnet_id="subnet-0a",
                    workload_route_table_ids=BYO_TABLES, local_cidrs=["10.30.0.0/16"],
                    ha={"steering": steering, "second_gateway_subnet_id": "subnet-0b", **ha})


def run(program: Program, previous: Evaluation | None = None, preview: bool = False,
        lookups: dict[str, dict[str, Any]] | None = None) -> Evaluation:
    cloud = HaLabCloud(preview=preview, previous=previous, lookups={**LOOKUPS, **(lookups or {})})
    return evaluate(program, {}, set(), cloud=cloud)


def site_program(args: AwsSiteArgs, endpoints_site: str | None = None) -> Program:
    """One site; its outputs, and what each of its endpoints carries."""

    def program() -> dict[str, Any]:
        provider = pulumi_aws.Provider("eu", region=REGION)
        site = AwsSite("lib", args, pulumi.ResourceOptions(providers=[provider]))
        return {
            "public_ips": site.gateway_public_ips, "private_ips": site.gateway_private_ips,
            "instance_ids": site.instance_ids, "ready": site.gateways_ready,
            "route_server_addresses": site.route_server_addresses, "public_ip": site.public_ip,
            "endpoints": [
                {k: e.get(k) for k in ("site", "public_ip", "gateway_private_ip", "machine_id",
                                       "gateway_ready", "aws_security_group_id", "local_cidrs",
                                       "remote_cidrs", "ha")}
                | {"has_ha": "ha" in e, "site_provider": e.get("aws_provider") is provider}
                for e in site.endpoints(endpoints_site)
            ],
        }

    return program


def one(ev: Evaluation, typ: str, name: str) -> Registration:
    found = [r for r in ev.by_type(typ) if r.name == name]
    assert len(found) == 1, (name, [r.name for r in ev.by_type(typ)])
    return found[0]


def waits_for(r: Registration, other: Registration) -> bool:
    """Whether ``r`` is created only after ``other`` (a dependency or an input taken from it)."""
    return other.urn in r.dependencies or any(other.urn in urns for urns in r.property_dependencies.values())


# --- two gateways -----------------------------------------------------------------------------

@pytest.mark.parametrize("steering", list(AwsHaSteering))
def test_two_gateways_in_two_zones_each_in_its_own_public_subnet(key: str, steering: str) -> None:
    ev = run(site_program(ha_site_args(key, steering)))
    subnets = {name: one(ev, SUBNET, name) for name in ("lib-gateway", "lib-gateway-2")}
    # Gateway 1's subnet keeps the zone AWS picks (the lab cloud picks eu-west-1a), as in single
    # mode, so turning HA on does not replace it; gateway 2's is the next zone apart from it.
    assert "availabilityZone" not in subnets["lib-gateway"].inputs
    assert subnets["lib-gateway"].state["availabilityZone"] == "eu-west-1a"
    assert subnets["lib-gateway-2"].inputs["availabilityZone"] == "eu-west-1b"
    assert subnets["lib-gateway-2"].inputs["cidrBlock"] == "172.16.1.0/24"
    public = one(ev, "aws:ec2/routeTable:RouteTable", "lib-public")
    association = one(ev, "aws:ec2/routeTableAssociation:RouteTableAssociation", "lib-gateway-2")
    assert association.inputs == {"subnetId": subnets["lib-gateway-2"].id, "routeTableId": public.id}
    instances = {name: one(ev, INSTANCE, name) for name in ("lib-gateway", "lib-gateway-2")}
    assert {n: i.inputs["subnetId"] for n, i in instances.items()} == {n: s.id for n, s in subnets.items()}
    sg = one(ev, "aws:ec2/securityGroup:SecurityGroup", "lib-gateway")
    key_pair = one(ev, "aws:ec2/keyPair:KeyPair", "lib-key")
    for instance in instances.values():
        assert instance.inputs["vpcSecurityGroupIds"] == [sg.id], instance.urn
        assert instance.inputs["keyName"] == key_pair.state["keyName"], instance.urn
        assert instance.inputs["sourceDestCheck"] is False, instance.urn
        assert instance.delete_before_replace, f"{instance.urn}: fixed IP, so delete before replace"
    assert instances["lib-gateway-2"].inputs["privateIp"] == "172.16.1.10"
    assert instances["lib-gateway-2"].inputs["tags"]["Name"] == "lib-gateway-2"
    igw = one(ev, "aws:ec2/internetGateway:InternetGateway", "lib-igw")
    for typ in ("aws:ec2/eip:Eip", "aws:ec2/eipAssociation:EipAssociation"):
        second = one(ev, typ, "lib-gateway-2")
        assert waits_for(second, igw), f"{second.urn} must wait for the internet gateway (NotAttached)"
    assert one(ev, "aws:ec2/eipAssociation:EipAssociation", "lib-gateway-2").delete_before_replace
    eips = {name: one(ev, "aws:ec2/eip:Eip", name).state["publicIp"] for name in instances}
    assert ev.outputs["public_ips"] == [eips["lib-gateway"], eips["lib-gateway-2"]]
    assert ev.outputs["public_ip"] == eips["lib-gateway"]
    assert ev.outputs["private_ips"] == ["172.16.0.10", "172.16.1.10"]
    assert ev.outputs["instance_ids"] == [instances["lib-gateway"].id, instances["lib-gateway-2"].id]
    # No Elastic IP association of gateway 2 leaks into gateway 1's names.
    assert len(ev.by_type("aws:ec2/eipAssociation:EipAssociation")) == 2


def test_zones_given_are_used_and_no_zone_lookup_is_made(key: str) -> None:
    ev = run(site_program(ha_site_args(key, site={"availability_zone": "eu-west-1c"},
                                       second_availability_zone="eu-west-1a")))
    assert one(ev, SUBNET, "lib-gateway").inputs["availabilityZone"] == "eu-west-1c"
    assert one(ev, SUBNET, "lib-gateway-2").inputs["availabilityZone"] == "eu-west-1a"
    assert not [t for t, _ in ev.cloud.calls if "getAvailabilityZones" in t]


def test_zone_lookup_asks_for_available_availability_zones_only(key: str) -> None:
    ev = run(site_program(ha_site_args(key)))
    (args,) = [a for t, a in ev.cloud.calls if "getAvailabilityZones" in t]
    assert args["state"] == "available"
    assert args["filters"] == [{"name": "opt-in-status", "values": ["opt-in-not-required"]}]


def test_region_with_one_zone_is_refused_naming_the_zone_arguments(key: str) -> None:
    one_zone = {"aws:index/getAvailabilityZones:getAvailabilityZones": {"names": ["eu-west-1a"]}}
    with pytest.raises(ComponentInputError) as caught:
        run(site_program(ha_site_args(key)), lookups=one_zone)
    message = str(caught.value)
    assert "AwsSite 'lib'" in message and "['eu-west-1a']" in message
    assert "'availability_zone'" in message and "'ha.second_availability_zone'" in message


def test_bring_your_own_ha_site_puts_the_gateways_in_your_two_subnets(key: str) -> None:
    ev = run(site_program(byo_args(key, "route-tables")))
    assert not ev.by_type(SUBNET) and not ev.by_type("aws:ec2/vpc:Vpc")
    assert [one(ev, INSTANCE, n).inputs["subnetId"] for n in ("lib-gateway", "lib-gateway-2")] == \
        ["subnet-0a", "subnet-0b"]
    assert not [t for t, _ in ev.cloud.calls if "getAvailabilityZones" in t]
    # A route per remote network in each of your route tables, each to gateway 1.
    routes = sorted((r.inputs["routeTableId"], r.name) for r in ev.by_type(ROUTE))
    assert routes == [(BYO_TABLES[0], "lib-to-192-168-10-0-24"),
                      (BYO_TABLES[1], "lib-rt1-to-192-168-10-0-24")]


def test_preview_of_an_ha_site_registers_both_gateways_with_nothing_known(key: str) -> None:
    for steering in AwsHaSteering:
        ev = run(site_program(ha_site_args(key, steering)), preview=True)
        assert {r.name for r in ev.by_type(INSTANCE)} == {"lib-gateway", "lib-gateway-2"}, steering


# --- route-server steering --------------------------------------------------------------------

def test_route_server_steering_peers_each_gateway_with_the_endpoint_in_its_subnet(key: str) -> None:
    ev = run(site_program(ha_site_args(key, "route-server")))
    server = one(ev, RS, "lib-rs")
    assert server.inputs["amazonSideAsn"] == 65000
    assert server.inputs["persistRoutes"] == "enable" and server.inputs["persistRoutesDuration"] == 1
    association = one(ev, RS_ASSOCIATION, "lib-rs")
    vpc = one(ev, "aws:ec2/vpc:Vpc", "lib-vpc")
    assert association.inputs == {"routeServerId": server.state["routeServerId"], "vpcId": vpc.id}
    for suffix in ("gateway", "gateway-2"):
        subnet, instance = one(ev, SUBNET, f"lib-{suffix}"), one(ev, INSTANCE, f"lib-{suffix}")
        endpoint = one(ev, RS_ENDPOINT, f"lib-rs-{suffix}")
        assert endpoint.inputs["subnetId"] == subnet.id, endpoint.urn
        assert endpoint.inputs["routeServerId"] == server.state["routeServerId"]
        assert association.urn in endpoint.dependencies, f"{endpoint.urn} before the VPC association"
        peer = one(ev, RS_PEER, f"lib-rs-{suffix}")
        assert peer.inputs["peerAddress"] == instance.state["privateIp"], peer.urn
        assert peer.inputs["routeServerEndpointId"] == endpoint.state["routeServerEndpointId"]
        assert peer.inputs["bgpOptions"] == {"peerAsn": 65010, "peerLivenessDetection": "bgp-keepalive"}
        bgp = one(ev, INGRESS, f"lib-bgp-{suffix}")
        assert (bgp.inputs["ipProtocol"], bgp.inputs["fromPort"], bgp.inputs["toPort"]) == ("tcp", 179, 179)
        assert bgp.inputs["cidrIpv4"] == f"{ENDPOINT_ADDRESSES[f'lib-rs-{suffix}']}/32"
    assert len(ev.by_type(RS_ENDPOINT)) == len(ev.by_type(RS_PEER)) == 2
    (propagation,) = ev.by_type(RS_PROPAGATION)
    workload = one(ev, "aws:ec2/routeTable:RouteTable", "lib-workload")
    assert propagation.inputs["routeTableId"] == workload.id
    assert association.urn in propagation.dependencies
    assert ev.outputs["route_server_addresses"] == ["172.16.0.5", "172.16.1.5"]
    # Nothing of the other steering.
    assert not ev.by_type(ROLE) and not ev.by_type(PROFILE)
    assert not [r for r in ev.by_type(INGRESS) if r.name == "lib-probe"]
    assert all("iamInstanceProfile" not in r.inputs for r in ev.by_type(INSTANCE))


def test_route_server_steering_makes_no_static_route_to_the_remote_networks(key: str) -> None:
    for args in (ha_site_args(key, "route-server"), byo_args(key, "route-server")):
        ev = run(site_program(args))
        remote = [r for r in ev.by_type(ROUTE) if r.inputs["destinationCidrBlock"] == "192.168.10.0/24"]
        assert not remote, f"a static route fights the propagated one: {[r.name for r in remote]}"
    # One propagation per workload route table of your own.
    assert sorted(r.inputs["routeTableId"] for r in ev.by_type(RS_PROPAGATION)) == BYO_TABLES


def test_route_server_as_and_bgp_as_are_taken(key: str) -> None:
    ev = run(site_program(ha_site_args(key, "route-server", bgp_as=4200000001, route_server_as=64512)))
    assert one(ev, RS, "lib-rs").inputs["amazonSideAsn"] == 64512
    assert {r.inputs["bgpOptions"]["peerAsn"] for r in ev.by_type(RS_PEER)} == {4200000001}


# --- route-tables steering --------------------------------------------------------------------

def test_route_tables_steering_lets_the_gateways_move_only_the_workload_routes(key: str) -> None:
    ev = run(site_program(byo_args(key, "route-tables")))
    role = one(ev, ROLE, "lib-gateway")
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    policy = one(ev, ROLE_POLICY, "lib-gateway-routes")
    assert policy.inputs["role"] == role.id
    statements = json.loads(policy.inputs["policy"])["Statement"]
    assert [(s["Effect"], s["Action"], s["Resource"]) for s in statements] == [
        ("Allow", ["ec2:CreateRoute", "ec2:ReplaceRoute"],
         [f"arn:aws:ec2:{REGION}:{ACCOUNT}:route-table/{table}" for table in BYO_TABLES]),
        ("Allow", "ec2:DescribeRouteTables", "*"),
    ]
    profile = one(ev, PROFILE, "lib-gateway")
    assert profile.inputs["role"] == role.state["name"]
    for name in ("lib-gateway", "lib-gateway-2"):
        assert one(ev, INSTANCE, name).inputs["iamInstanceProfile"] == profile.state["name"], name


def test_route_tables_steering_routes_to_gateway_1_and_ignores_where_the_gateways_move_them(
    key: str
) -> None:
    ev = run(site_program(ha_site_args(key, "route-tables")))
    eni = one(ev, INSTANCE, "lib-gateway").state["primaryNetworkInterfaceId"]
    (route,) = [r for r in ev.by_type(ROUTE) if r.name != "lib-default"]
    assert route.inputs["networkInterfaceId"] == eni
    assert route.ignore_changes == ["networkInterfaceId"]
    assert not one(ev, ROUTE, "lib-default").ignore_changes
    sg = one(ev, "aws:ec2/securityGroup:SecurityGroup", "lib-gateway")
    probe = one(ev, INGRESS, "lib-probe")
    assert {k: probe.inputs[k] for k in ("ipProtocol", "fromPort", "toPort", "referencedSecurityGroupId",
                                          "securityGroupId")} == {
        "ipProtocol": "tcp", "fromPort": 8080, "toPort": 8080, "referencedSecurityGroupId": sg.id,
        "securityGroupId": sg.id}
    assert "cidrIpv4" not in probe.inputs
    assert not ev.by_type(RS) and not ev.by_type(RS_PEER) and not ev.by_type(RS_ENDPOINT)
    assert not [r for r in ev.by_type(INGRESS) if r.name.startswith("lib-bgp-")]
    assert ev.outputs["route_server_addresses"] == []


def test_route_tables_is_the_default_steering(key: str) -> None:
    ev = run(site_program(ha_site_args(key)))
    assert ev.by_type(ROLE) and not ev.by_type(RS)


def test_a_route_the_gateways_moved_stays_where_they_put_it_on_the_next_up(key: str) -> None:
    """After a failover and a refresh, the stored target is gateway 2's ENI: `up` leaves it."""
    ha_program = site_program(ha_site_args(key, "route-tables"))
    single_program = site_program(aws_args(key))
    for program, expected in ((ha_program, "same"), (single_program, "update")):
        first = run(program)
        route = next(r for r in first.by_type(ROUTE) if r.name == "lib-to-192-168-10-0-24")
        route.stored_inputs["networkInterfaceId"] = route.state["networkInterfaceId"] = "eni-0moved"
        second = run(program, previous=first)
        again = one(second, ROUTE, "lib-to-192-168-10-0-24")
        assert again.action == expected, (again.action, again.changed)
    # The control (single gateway, no ignore_changes) puts the route back; HA keeps the move.
    assert again.changed == ["networkInterfaceId"]


def test_probe_port_is_taken(key: str) -> None:
    ev = run(site_program(ha_site_args(key, probe_port=9443)))
    probe = one(ev, INGRESS, "lib-probe")
    assert (probe.inputs["fromPort"], probe.inputs["toPort"]) == (9443, 9443)
    assert {e["ha"]["probe_port"] for e in ev.outputs["endpoints"]} == {9443}


# --- endpoints() --------------------------------------------------------------------------------

def test_route_tables_endpoints_name_each_gateway_and_cross_the_partner_addresses(key: str) -> None:
    ev = run(site_program(ha_site_args(key, "route-tables")))
    first, second = ev.outputs["endpoints"]
    assert (first["site"], second["site"]) == ("aws-1", "aws-2")
    assert [e["public_ip"] for e in (first, second)] == ev.outputs["public_ips"]
    assert [e["gateway_private_ip"] for e in (first, second)] == ["172.16.0.10", "172.16.1.10"]
    assert [e["machine_id"] for e in (first, second)] == ev.outputs["instance_ids"]
    assert [e["gateway_ready"] for e in (first, second)] == ev.outputs["ready"]
    assert first["aws_security_group_id"] == second["aws_security_group_id"]
    assert first["site_provider"] is second["site_provider"] is True
    table = one(ev, "aws:ec2/routeTable:RouteTable", "lib-workload").id
    assert first["ha"] == {"bgp_as": 65010, "standby": False, "probe_port": 8080, "route_tables": {
        "region": REGION, "route_table_ids": [table], "partner_private_ip": "172.16.1.10"}}
    assert second["ha"] == {"bgp_as": 65010, "standby": True, "probe_port": 8080, "route_tables": {
        "region": REGION, "route_table_ids": [table], "partner_private_ip": "172.16.0.10"}}


def test_route_server_endpoints_name_each_gateways_own_route_server_endpoint(key: str) -> None:
    ev = run(site_program(ha_site_args(key, "route-server"), endpoints_site="east"))
    first, second = ev.outputs["endpoints"]
    assert (first["site"], second["site"]) == ("east-1", "east-2")
    assert first["ha"] == {"bgp_as": 65010, "standby": False, "route_server_addresses": ["172.16.0.5"],
                           "route_server_as": 65000}
    assert second["ha"] == {"bgp_as": 65010, "standby": True, "route_server_addresses": ["172.16.1.5"],
                            "route_server_as": 65000}


def test_single_gateway_site_has_one_endpoint_without_ha(key: str) -> None:
    def program() -> dict[str, Any]:
        site = AwsSite("lib", aws_args(key))
        (only,) = site.endpoints()
        same = site.endpoint()
        assert set(only) == set(same) and "ha" not in only
        named = site.endpoints("west")
        return {"pairs": [[only[k], same[k]] for k in only if k != "aws_provider"],
                "named": [e["site"] for e in named], "ips": site.gateway_public_ips,
                "ip": site.public_ip, "addresses": site.route_server_addresses}

    ev = run(program)
    assert ev.outputs["named"] == ["west"]
    assert all(a == b for a, b in ev.outputs["pairs"]), ev.outputs["pairs"]
    assert ev.outputs["ips"] == [ev.outputs["ip"]] and ev.outputs["addresses"] == []


def test_endpoint_of_an_ha_site_points_to_endpoints(key: str) -> None:
    def program() -> dict[str, Any]:
        AwsSite("lib", ha_site_args(key)).endpoint()
        return {}

    with pytest.raises(ComponentInputError, match=r"AwsSite 'lib' has two gateways .*site\.endpoints\(\)"):
        run(program)


def test_numbers_from_other_languages_arrive_as_floats_and_are_taken(key: str) -> None:
    ev = run(site_program(ha_site_args(key, "route-tables", bgp_as=65010.0, probe_port=8080.0)))
    assert one(ev, INGRESS, "lib-probe").inputs["fromPort"] == 8080
    assert [e["ha"]["bgp_as"] for e in ev.outputs["endpoints"]] == [65010, 65010]
    assert all(type(e["ha"]["bgp_as"]) is int for e in ev.outputs["endpoints"])


# --- every later `up` -----------------------------------------------------------------------------

@pytest.mark.parametrize("make_args", [
    pytest.param(lambda key: ha_site_args(key, "route-tables"), id="route-tables"),
    pytest.param(lambda key: ha_site_args(key, "route-server"), id="route-server"),
    pytest.param(lambda key: byo_args(key, "route-server"), id="byo-route-server"),
])
def test_second_up_with_nothing_changed_changes_nothing(
    key: str, make_args: Callable[[str], AwsSiteArgs]
) -> None:
    program = site_program(make_args(key))
    first = run(program)
    second = run(program, previous=first)
    assert second.changes() == {}, second.changes()
    assert second.outputs == first.outputs


def test_new_gateway_as_replaces_only_the_route_server_peers(key: str) -> None:
    first = run(site_program(ha_site_args(key, "route-server")))
    second = run(site_program(ha_site_args(key, "route-server", bgp_as=65020)), previous=first)
    # bgp_options force a new peer (terraform-provider-aws: RequiresReplace).
    assert second.changes() == {(RS_PEER, "lib-rs-gateway"): "replace",
                                (RS_PEER, "lib-rs-gateway-2"): "replace"}


def test_new_route_server_as_replaces_the_route_server_and_what_hangs_on_it(key: str) -> None:
    first = run(site_program(ha_site_args(key, "route-server")))
    second = run(site_program(ha_site_args(key, "route-server", route_server_as=64600)), previous=first)
    changes = second.changes()
    # amazon_side_asn forces a new route server, and its new id everything made on it; the
    # gateways, their subnets and addresses stay (the lab cloud gives a new endpoint its old
    # address; AWS may not, and then the BGP rules follow it).
    assert set(changes.values()) == {"replace"}, changes
    assert {typ for typ, _ in changes} == {RS, RS_ASSOCIATION, RS_ENDPOINT, RS_PEER, RS_PROPAGATION}
    assert len(changes) == 1 + 1 + 2 + 2 + 1


# --- cloud API rules ------------------------------------------------------------------------------

@pytest.mark.parametrize("make_args", [
    pytest.param(lambda key: ha_site_args(key, "route-tables"), id="route-tables"),
    pytest.param(lambda key: ha_site_args(key, "route-server"), id="route-server"),
    pytest.param(lambda key: byo_args(key, "route-tables"), id="byo-route-tables"),
])
def test_every_ha_resource_keeps_every_cloud_api_rule(key: str, make_args: Callable[[str], AwsSiteArgs]
                                                      ) -> None:
    # The rule table of tests/test_cloud_api_rules.py: descriptions, names, tags.
    ev = run(site_program(make_args(key)))
    problems = list(problems_of(ev))
    assert not problems, "\n".join(problems)
    described = [r for r in ev.by_type(INGRESS) if r.name.startswith(("lib-bgp-", "lib-probe"))]
    described += ev.by_type(ROLE)
    assert described and all(r.inputs.get("description") for r in described)


# --- mistakes -------------------------------------------------------------------------------------

HA_MISTAKES: list[tuple[str, Callable[[str], AwsSiteArgs], tuple[str, ...]]] = [
    ("steering_unknown", lambda k: ha_site_args(k, "bgp"), ("'ha.steering'", "'bgp'", "'route-tables'")),
    ("no_second_subnet", lambda k: second_subnet(k, None), ("'ha.second_gateway_subnet_cidr' is missing",)),
    ("second_subnet_outside_vpc", lambda k: second_subnet(k, "10.9.0.0/24"),
     ("'ha.second_gateway_subnet_cidr'", "10.9.0.0/24", "outside 'vpc_cidr'")),
    ("second_subnet_overlaps_gateway_subnet", lambda k: second_subnet(k, "172.16.0.128/25"),
     ("'gateway_subnet_cidr'", "'ha.second_gateway_subnet_cidr'", "172.16.0.128/25", "overlaps")),
    ("second_subnet_overlaps_workload", lambda k: second_subnet(k, "172.16.10.0/28"),
     ("'workload_subnet_cidrs[0]'", "'ha.second_gateway_subnet_cidr'", "overlaps")),
    ("second_subnet_too_small", lambda k: second_subnet(k, "172.16.1.0/29"),
     ("'ha.second_gateway_subnet_cidr'", "172.16.1.0/29", "/28 or larger")),
    ("second_subnet_host_bits", lambda k: second_subnet(k, "172.16.1.1/24"),
     ("'ha.second_gateway_subnet_cidr'", "host bits", "172.16.1.0/24")),
    ("second_subnet_id_in_created_vpc", lambda k: ha_site_args(k, second_gateway_subnet_id="subnet-0b"),
     ("'ha.second_gateway_subnet_id'", "'ha.second_gateway_subnet_cidr'")),
    ("zone_without_second_zone", lambda k: ha_site_args(k, site={"availability_zone": "eu-west-1a"}),
     ("'ha.second_availability_zone' is missing", "'eu-west-1a'")),
    ("second_zone_without_zone", lambda k: ha_site_args(k, second_availability_zone="eu-west-1b"),
     ("'ha.second_availability_zone'", "'eu-west-1b'", "'availability_zone' is not set")),
    ("same_zone_twice", lambda k: ha_site_args(k, site={"availability_zone": "eu-west-1a"},
                                               second_availability_zone="eu-west-1a"),
     ("'ha.second_availability_zone'", "'eu-west-1a'", "same as 'availability_zone'")),
    ("second_ip_outside_second_subnet", lambda k: ha_site_args(k, second_gateway_private_ip="172.16.0.11"),
     ("'ha.second_gateway_private_ip'", "172.16.0.11", "outside 'ha.second_gateway_subnet_cidr'")),
    ("second_ip_not_an_address", lambda k: byo_args(k, "route-tables", second_gateway_private_ip="10.30.1"),
     ("'ha.second_gateway_private_ip'", "'10.30.1'", "not an IPv4 address")),
    ("same_ip_twice", lambda k: {**byo_args(k, "route-tables", second_gateway_private_ip="10.30.0.10"),
                                 "gateway_private_ip": "10.30.0.10"},
     ("'ha.second_gateway_private_ip'", "'10.30.0.10'", "same as 'gateway_private_ip'")),
    ("byo_without_second_subnet", lambda k: byo_args(k, "route-tables", second_gateway_subnet_id=None),
     ("'ha.second_gateway_subnet_id' is missing", "'vpc_id'")),
    ("byo_with_second_subnet_cidr",
     lambda k: byo_args(k, "route-tables", second_gateway_subnet_cidr="10.30.1.0/24"),
     ("'ha.second_gateway_subnet_cidr' is for a created VPC",)),
    ("byo_with_second_zone", lambda k: byo_args(k, "route-tables", second_availability_zone="eu-west-1b"),
     ("'ha.second_availability_zone'", "'eu-west-1b'", "'ha.second_gateway_subnet_id'")),
    ("bgp_as_zero", lambda k: ha_site_args(k, bgp_as=0), ("'ha.bgp_as' is 0", "1 to 4294967295")),
    ("bgp_as_too_big", lambda k: ha_site_args(k, bgp_as=4294967296), ("'ha.bgp_as' is 4294967296",)),
    ("bgp_as_fraction", lambda k: ha_site_args(k, bgp_as=65010.5),
     ("'ha.bgp_as' is 65010.5", "whole number")),
    ("bgp_as_text", lambda k: ha_site_args(k, bgp_as="65010"), ("'ha.bgp_as' is '65010'",)),
    ("route_server_as_is_bgp_as", lambda k: ha_site_args(k, "route-server", bgp_as=65000),
     ("'ha.route_server_as' and 'ha.bgp_as' are both 65000",)),
    ("route_server_as_too_big", lambda k: ha_site_args(k, "route-server", route_server_as=2**32),
     ("'ha.route_server_as' is 4294967296",)),
    ("route_server_as_without_route_server", lambda k: ha_site_args(k, "route-tables", route_server_as=65001),
     ("'ha.route_server_as' is set", "'route-tables'", "'route-server'")),
    ("probe_port_with_route_server", lambda k: ha_site_args(k, "route-server", probe_port=8080),
     ("'ha.probe_port' is set", "'route-server'", "'route-tables'")),
    ("probe_port_taken_by_bgp", lambda k: ha_site_args(k, probe_port=179),
     ("'ha.probe_port' is 179", "taken")),
    ("probe_port_out_of_range", lambda k: ha_site_args(k, probe_port=70000),
     ("'ha.probe_port' is 70000", "1 to 65535")),
    ("empty_ha", lambda k: aws_args(k, ha={}), ("'ha.second_gateway_subnet_cidr' is missing",)),
]


@pytest.mark.parametrize("preview", [False, True], ids=["update", "preview"])
@pytest.mark.parametrize(("make_args", "fragments"), [pytest.param(a, f, id=i) for i, a, f in HA_MISTAKES])
def test_ha_mistake_fails_at_construction_naming_argument_and_value(
    key: str, make_args: Callable[[str], AwsSiteArgs], fragments: tuple[str, ...], preview: bool
) -> None:
    def program() -> dict[str, Any]:
        AwsSite("lib", make_args(key))
        return {}

    refused(program, "AwsSite 'lib'", *fragments, preview=preview, component=COMPONENT)


def test_every_ha_problem_is_reported_at_once(key: str) -> None:
    def program() -> dict[str, Any]:
        AwsSite("lib", second_subnet(key, "172.16.1.0/29", steering="route-server", bgp_as=65000,
                                     probe_port=8080, site={"availability_zone": "eu-west-1a"}))
        return {}

    cloud = refused(program, "'ha.second_gateway_subnet_cidr'", "'ha.second_availability_zone' is missing",
                    "'ha.route_server_as' and 'ha.bgp_as'", "'ha.probe_port' is set")
    assert not [r for r in cloud.registrations if r.custom]


def test_an_output_second_subnet_id_is_taken(key: str) -> None:
    ev = run(site_program(byo_args(key, "route-tables",
                                   second_gateway_subnet_id=pulumi.Output.from_input("subnet-0c"))))
    assert one(ev, INSTANCE, "lib-gateway-2").inputs["subnetId"] == "subnet-0c"
