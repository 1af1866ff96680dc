"""Bring your own network: the prod example stack joins existing networks and creates none."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cross_cloud_vpn.components.site import network_mode_problems
from cross_cloud_vpn.lab_cloud import DEFAULT_LOOKUPS, Evaluation, evaluate
from cross_cloud_vpn.openbsd import parse_bootstrap
from cross_cloud_vpn.program import build
from cross_cloud_vpn.stack_config import ConfigProblems, parse_settings
from cross_cloud_vpn.stack_file import read_stack_file
from tests.conftest import REPO

P = "cross-cloud-vpn:"
PROD = REPO / "Pulumi.prod.example.yaml"
AWS_BLOCKS = ["10.30.0.0/16", "10.31.0.0/16"]     # what the lab cloud's get_vpc answers
AZURE_BLOCKS = ["10.40.0.0/16", "10.41.0.0/16"]   # what its get_virtual_network answers
NETWORK_TYPES = {
    "aws:ec2/vpc:Vpc", "aws:ec2/internetGateway:InternetGateway", "aws:ec2/subnet:Subnet",
    "aws:ec2/routeTable:RouteTable", "aws:ec2/routeTableAssociation:RouteTableAssociation",
    "azure-native:resources:ResourceGroup", "azure-native:network:VirtualNetwork",
    "azure-native:network:Subnet", "azure-native:network:RouteTable",
}


@pytest.fixture()
def prod_values(ssh_keypair: tuple[str, str]) -> dict[str, str]:
    values = read_stack_file(PROD)
    values[P + "sshPublicKey"], values[P + "sshPrivateKey"] = ssh_keypair
    return values


@pytest.fixture()
def run_prod(prod_values: dict[str, str], iked_public_keys: dict[str, str]) -> Callable[..., Evaluation]:
    def runner(preview: bool = False, lookups: dict[str, dict[str, object]] | None = None) -> Evaluation:
        return evaluate(build, prod_values, {P + "sshPrivateKey"}, stack="prod", preview=preview,
                        public_keys=iked_public_keys, lookups=lookups)
    return runner


def test_prod_example_is_a_valid_byo_stack_on_both_sides(prod_values: dict[str, str]) -> None:
    settings = parse_settings(prod_values, {P + "sshPrivateKey"}, stack="prod")
    assert settings.aws.network.brings_own and settings.azure.network.brings_own
    assert settings.aws.network.workload_route_table_ids == ("rtb-0abc1234def567890", "rtb-0fed4321cba098765")
    assert settings.aws.network.gateway_private_ip is None
    assert settings.prefix == "ccvpn-prod" and settings.tags["stack"] == "prod"


@pytest.mark.parametrize("preview", [False, True], ids=["update", "preview"])
def test_byo_registers_no_network_resource(run_prod: Callable[..., Evaluation], preview: bool) -> None:
    ev = run_prod(preview=preview)
    made = {r.type for r in ev.resources}
    assert not made & NETWORK_TYPES, f"BYO created {made & NETWORK_TYPES}"
    assert {"aws:ec2/instance:Instance", "aws:ec2/eip:Eip", "azure-native:compute:VirtualMachine",
            "azure-native:network:PublicIPAddress"} <= made


def test_byo_local_cidrs_come_from_the_lookups(run_prod: Callable[..., Evaluation]) -> None:
    ev = run_prod()
    assert ev.outputs["aws_cidrs"] == AWS_BLOCKS and ev.outputs["azure_cidrs"] == AZURE_BLOCKS
    tokens = [token for token, _ in ev.cloud.calls]
    assert "aws:ec2/getVpc:getVpc" in tokens and "azure-native:network:getVirtualNetwork" in tokens
    vnet_call = next(a for t, a in ev.cloud.calls if t == "azure-native:network:getVirtualNetwork")
    assert (vnet_call["resourceGroupName"], vnet_call["virtualNetworkName"]) == ("network-prod", "hub-vnet")
    iked = parse_bootstrap(ev.named("-tunnel-aws-configure").inputs["stdin"]).files["/etc/iked.conf"][0]
    flows = {line.strip(" \t\\") for line in iked.splitlines() if line.strip().startswith("from ")}
    assert flows == {f"from {a} to {b}" for a in AWS_BLOCKS for b in AZURE_BLOCKS}


def test_byo_routes_every_remote_cidr_into_every_named_route_table(
    run_prod: Callable[..., Evaluation]
) -> None:
    ev = run_prod()
    gateway = next(r for r in ev.by_type("aws:ec2/instance:Instance") if r.name.endswith("-aws-gateway"))
    assert gateway.inputs["subnetId"] == "subnet-0abc1234def567890"
    routes = ev.by_type("aws:ec2/route:Route")
    assert {(r.inputs["routeTableId"], r.inputs["destinationCidrBlock"]) for r in routes} == {
        (t, c) for t in ("rtb-0abc1234def567890", "rtb-0fed4321cba098765") for c in AZURE_BLOCKS}
    assert all(r.inputs["networkInterfaceId"] == gateway.state["primaryNetworkInterfaceId"] for r in routes)
    azure_routes = ev.by_type("azure-native:network:Route")
    assert {r.inputs["addressPrefix"] for r in azure_routes} == set(AWS_BLOCKS)
    for route in azure_routes:
        where = (route.inputs["resourceGroupName"], route.inputs["routeTableName"])
        assert where == ("network-prod", "workloads"), route.urn
        assert route.inputs["nextHopType"] == "VirtualAppliance"
    nic = next(r for r in ev.by_type("azure-native:network:NetworkInterface") if "gateway" in r.name)
    assert nic.inputs["ipConfigurations"][0]["subnet"]["id"].endswith("/subnets/vpn-gateway")
    assert nic.inputs["networkSecurityGroup"]["id"], "the gateway NSG must sit on the NIC in BYO"
    assert nic.inputs["resourceGroupName"] == "network-prod"


def test_vpc_blocks_that_are_not_associated_are_neither_routed_nor_in_the_tunnel(
    run_prod: Callable[..., Evaluation]
) -> None:
    """A removed block stays in get_vpc's list (disassociating, disassociated, failed)."""
    gone = {"10.32.0.0/16": "disassociated", "10.33.0.0/16": "disassociating", "10.34.0.0/16": "failed"}
    vpc = DEFAULT_LOOKUPS["aws:ec2/getVpc:getVpc"]
    answer = {**vpc, "cidrBlockAssociations": [
        *vpc["cidrBlockAssociations"],
        *({"cidrBlock": c, "associationId": f"gone-{i}", "state": state}
          for i, (c, state) in enumerate(gone.items())),
    ]}
    ev = run_prod(lookups={"aws:ec2/getVpc:getVpc": answer})
    assert ev.outputs["aws_cidrs"] == AWS_BLOCKS
    routed = {r.inputs["addressPrefix"] for r in ev.by_type("azure-native:network:Route")}
    assert routed == set(AWS_BLOCKS), f"Azure routes blocks the VPC no longer has: {routed - set(AWS_BLOCKS)}"
    for site in ("aws", "azure"):
        stdin = ev.named(f"-tunnel-{site}-configure").inputs["stdin"]
        iked = parse_bootstrap(stdin).files["/etc/iked.conf"][0]
        assert not [c for c in gone if c in iked], f"{site} iked.conf holds a block that is not associated"


def test_looked_up_networks_that_overlap_fail_naming_both_networks(
    run_prod: Callable[..., Evaluation]
) -> None:
    """The lookups need the two providers; the error comes before any cloud resource."""
    clash = {**DEFAULT_LOOKUPS["azure-native:network:getVirtualNetwork"],
             "addressSpace": {"addressPrefixes": ["10.31.128.0/20"]}}
    with pytest.raises(Exception) as caught:
        run_prod(lookups={"azure-native:network:getVirtualNetwork": clash})
    text = str(caught.value)
    assert "aws.vpcId vpc-0abc1234def567890" in text and "10.31.0.0/16" in text and "10.31.128.0/20" in text


def _mutated(values: dict[str, str], side: str, **changes: object) -> dict[str, str]:
    obj = json.loads(values[P + side])
    obj.update(changes)
    return {**values, P + side: json.dumps(obj)}


@pytest.mark.parametrize(
    ("side", "changes", "fragments"),
    [
        ("aws", {"vpcCidr": "10.30.0.0/16"}, ("aws.vpcId", "aws.vpcCidr", "both set")),
        ("azure", {"workloadSubnetCidrs": ["10.40.1.0/24"]}, ("azure.vnetId", "azure.workloadSubnetCidrs")),
        ("aws", {"vpcId": "vpc-XYZ"}, ("aws.vpcId", "vpc-XYZ", "vpc-0abc1234")),
        ("aws", {"workloadRouteTableIds": ["rtb-0abc1234def567890", "subnet-123"]},
         ("aws.workloadRouteTableIds[1]", "subnet-123")),
        ("azure", {"workloadRouteTableId": "/subscriptions/x/resourceGroups/y"},
         ("azure.workloadRouteTableId", "routeTables")),
        ("azure", {"testVm": {"vmSize": "Standard_B1s"}}, ("azure.testVm", "azure.vnetId")),
        ("aws", {"gatewayPrivateIp": "10.30.0.300"}, ("aws.gatewayPrivateIp", "10.30.0.300")),
    ],
    ids=["aws_both_ways", "azure_both_ways", "bad_vpc_id", "bad_route_table_id", "bad_azure_route_table",
         "test_vm_with_byo", "bad_fixed_ip"],
)
def test_bad_byo_config_is_refused_naming_the_keys(
    prod_values: dict[str, str], side: str, changes: dict[str, object], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigProblems) as caught:
        parse_settings(_mutated(prod_values, side, **changes), {P + "sshPrivateKey"})
    for fragment in fragments:
        assert fragment in str(caught.value), f"{fragment!r} missing from {caught.value}"


def test_examples_in_the_repo_are_the_two_documented_stacks() -> None:
    assert sorted(p.name for p in Path(REPO).glob("Pulumi.*.yaml")) == ["Pulumi.dev.yaml",
                                                                       "Pulumi.prod.example.yaml"]


CREATE = {"vpc_cidr": "10.0.0.0/16", "gateway_subnet_cidr": "10.0.0.0/24", "workload_subnet_cidrs": ["x"]}
BYO = {"vpc_id": "vpc-1", "gateway_subnet_id": "s", "workload_route_table_ids": ["r"], "local_cidrs": ["c"]}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (CREATE, []),
        (BYO, []),
        ({"vpc_cidr": "10.0.0.0/16"}, ["set vpc_cidr, gateway_subnet_cidr, workload_subnet_cidrs, "
                                       "or vpc_id"]),
        ({"vpc_id": "vpc-1"}, ["vpc_id needs gateway_subnet_id, workload_route_table_ids, local_cidrs"]),
        (
            {**BYO, "vpc_cidr": "10.0.0.0/16", "test_vm": {"private_ip": "10.0.1.20"}},
            [
                "vpc_id (bring your own) cannot go with "
                "vpc_cidr/gateway_subnet_cidr/workload_subnet_cidrs (create)",
                "test_vm needs a created network (no workload subnet is known with vpc_id)",
            ],
        ),
    ],
    ids=["create", "byo", "create_incomplete", "byo_incomplete", "both_and_test_vm"],
)
def test_site_args_must_be_one_complete_network_mode(args: dict[str, object], expected: list[str]) -> None:
    assert network_mode_problems(args, "vpc_cidr", "vpc_id", "workload_route_table_ids") == expected
