"""The programs in examples/ run as another project would run them, under the lab cloud."""

from __future__ import annotations

import runpy
from collections.abc import Mapping
from typing import Any

import pytest

from cross_cloud_vpn.lab_cloud import Evaluation, evaluate
from tests.conftest import REPO

E = "example:"
RG = "/subscriptions/0/resourceGroups/net/providers/Microsoft.Network"


def run_example(name: str, config: Mapping[str, str], keys: dict[str, str]) -> Evaluation:
    exported: dict[str, Any] = {}

    def program() -> dict[str, Any]:
        namespace = runpy.run_path(str(REPO / "examples" / f"{name}.py"), run_name="__main__")
        joined = namespace.get("pair") or namespace["tunnels"]
        exported.update({"tunnel_status": joined.tunnel_status})
        return exported

    return evaluate(program, config, {E + "sshPrivateKey"}, public_keys=keys)


@pytest.fixture()
def base(ssh_keypair: tuple[str, str]) -> dict[str, str]:
    return {E + "sshPublicKey": ssh_keypair[0], E + "sshPrivateKey": ssh_keypair[1],
            E + "adminCidr": "192.0.2.0/24", E + "amiId": "ami-0123456789abcdef0",
            E + "azureImageId": "/subscriptions/0/resourceGroups/img/providers/Microsoft.Compute/images/obsd"}


def test_new_networks_example_creates_both_networks_and_the_pair(
    base: dict[str, str], iked_public_keys: dict[str, str]
) -> None:
    ev = run_example("new_networks", base, iked_public_keys)
    types = {r.type for r in ev.resources}
    assert {"aws:ec2/vpc:Vpc", "azure-native:network:VirtualNetwork",
            "cross-cloud-vpn:index:Ikev2GatewayPair"} <= types
    assert len(ev.by_type("command:remote:Command")) == 8


def test_high_availability_example_builds_two_tunnels_between_four_gateways(
    base: dict[str, str], iked_public_keys: dict[str, str]
) -> None:
    keys = {f"{side}-{n}": iked_public_keys[side] for side in ("aws", "azure") for n in (1, 2)}
    ev = run_example("high_availability", base, keys)
    gateways = [r for r in ev.by_type("aws:ec2/instance:Instance")]
    assert len(gateways) == 2 and len(ev.by_type("azure-native:compute:VirtualMachine")) == 2
    assert len(ev.by_type("cross-cloud-vpn:index:Ikev2GatewayPair")) == 2
    assert len(ev.by_type("azure-native:network:LoadBalancer")) == 1
    # Four gateways, four SSH steps each.
    assert len(ev.by_type("command:remote:Command")) == 16
    assert ev.outputs["tunnel_status"].count("not checked") == 4


def test_byo_example_creates_no_network(base: dict[str, str], iked_public_keys: dict[str, str]) -> None:
    config = {**base, E + "vpcId": "vpc-0123456789abcdef0", E + "gatewaySubnetId": "subnet-0123456789abcdef0",
              E + "routeTableId": "rtb-0123456789abcdef0", E + "vnetResourceGroup": "net",
              E + "vnetName": "hub", E + "azureGatewaySubnetId": f"{RG}/virtualNetworks/hub/subnets/gw",
              E + "azureRouteTableId": f"{RG}/routeTables/workloads"}
    ev = run_example("byo_networks", config, iked_public_keys)
    types = {r.type for r in ev.resources}
    assert not types & {"aws:ec2/vpc:Vpc", "azure-native:network:VirtualNetwork",
                        "azure-native:resources:ResourceGroup", "aws:ec2/internetGateway:InternetGateway"}
    routes = ev.by_type("aws:ec2/route:Route")
    assert {r.inputs["destinationCidrBlock"] for r in routes} == {"10.40.0.0/16", "10.41.0.0/16"}


def test_library_program_with_explicit_providers_outputs_and_psk_registers_and_renders(
    base: dict[str, str], iked_public_keys: dict[str, str]
) -> None:
    config = {**base, E + "vpcId": "vpc-0123456789abcdef0", E + "gatewaySubnetId": "subnet-0123456789abcdef0",
              E + "psk": "library-users-own-psk-0123456789"}

    def program() -> dict[str, Any]:
        pair = runpy.run_path(str(REPO / "examples" / "library_two_regions.py"), run_name="__main__")["pair"]
        return {"aws": pair.left_iked_conf, "azure": pair.right_iked_conf, "status": pair.tunnel_status}

    ev = evaluate(program, config, {E + "sshPrivateKey", E + "psk"}, public_keys=iked_public_keys)
    providers = {r.name: r.urn for r in ev.resources if r.type.startswith("pulumi:providers:")}
    # The pair's firewall rules go through each site's own provider, not the default one.
    peer_rules = [r for r in ev.resources if r.name.startswith("vpn-") and "-from-" in r.name]
    assert len(peer_rules) == 5, [r.name for r in peer_rules]
    for rule in peer_rules:
        expected = providers["ohio" if rule.type.startswith("aws:") else "europe"]
        assert rule.provider.startswith(expected + "::"), f"{rule.urn} uses {rule.provider}"
    # The looked-up VPC blocks (an Output list) are routed on Azure and carried by the tunnel.
    azure_routes = {r.inputs["addressPrefix"] for r in ev.by_type("azure-native:network:Route")}
    assert azure_routes == {"10.30.0.0/16", "10.31.0.0/16"}
    aws_routes = ev.by_type("aws:ec2/route:Route")
    assert {r.inputs["destinationCidrBlock"] for r in aws_routes} == {"192.168.16.0/22", "192.168.20.0/22"}
    workloads = next(r for r in ev.by_type("aws:ec2/routeTable:RouteTable") if r.name == "workloads")
    assert {r.inputs["routeTableId"] for r in aws_routes} == {workloads.id}
    aws_conf = ev.outputs["aws"]
    assert "from 10.30.0.0/16 to 192.168.16.0/22" in aws_conf
    assert "from 10.31.0.0/16 to 192.168.20.0/22" in aws_conf
    assert 'psk "library-users-own-psk-0123456789"' in aws_conf
    assert "local 192.168.31.250 peer" in ev.outputs["azure"]
    assert {"aws", "azure"} <= ev.secret_outputs, "PSK mode: both iked.conf outputs are secrets"
    assert [r.inputs["instanceType"] for r in ev.by_type("aws:ec2/instance:Instance")] == ["m4.large"]
