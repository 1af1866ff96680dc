"""The components check their own inputs, as a library user meets them (no stack config).

Every mistake fails when the component is constructed, before it registers a child, naming the
argument and the value, in an update and in a preview; an Output fails as soon as it resolves,
with the same kind of message (not the SDK's "While processing input" wrapper). The rules are
the stack config's (``cross_cloud_vpn.checks``): one copy.
"""

from __future__ import annotations

import pydoc
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest

from cross_cloud_vpn.components import (
    AwsSite,
    AwsSiteArgs,
    AzureSite,
    AzureSiteArgs,
    IkeAuthMode,
    IkeRole,
    Ikev2GatewayPair,
    Ikev2GatewayPairArgs,
)
from cross_cloud_vpn.components.site import ComponentInputError
from cross_cloud_vpn.lab_cloud import LabCloud, evaluate
from tests.conftest import PSK

IMAGE = "/subscriptions/0/resourceGroups/img/providers/Microsoft.Compute/images/obsd"
Program = Callable[[], dict[str, Any]]
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"


@pytest.fixture(scope="module")
def ed25519_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    key = tmp_path_factory.mktemp("ed") / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return Path(f"{key}.pub").read_text().strip()


def aws_args(key: str, **changes: Any) -> AwsSiteArgs:
    args: dict[str, Any] = dict(
        vpc_cidr="172.16.0.0/16", gateway_subnet_cidr="172.16.0.0/24",
        workload_subnet_cidrs=["172.16.10.0/24"],
        remote_cidrs=["192.168.10.0/24"], admin_cidrs=["198.51.100.7/32"], ssh_public_key=key,
        ami_id="ami-0123456789abcdef0", gateway_private_ip="172.16.0.10",
    )
    args.update(changes)
    return AwsSiteArgs(**{k: v for k, v in args.items() if v is not None})  # type: ignore[typeddict-item]


def azure_args(key: str, **changes: Any) -> AzureSiteArgs:
    args: dict[str, Any] = dict(
        location="northeurope", resource_group_name="lib-rg", vnet_cidr="192.168.0.0/16",
        gateway_subnet_cidr="192.168.0.0/24", workload_subnet_cidrs=["192.168.10.0/24"],
        remote_cidrs=["172.16.10.0/24"], admin_cidrs=["198.51.100.7/32"], ssh_public_key=key,
        image_id=IMAGE, gateway_private_ip="192.168.0.10",
    )
    args.update(changes)
    return AzureSiteArgs(**{k: v for k, v in args.items() if v is not None})  # type: ignore[typeddict-item]


def pair_program(key: str, ssh_private_key: str, **changes: Any) -> Program:
    def program() -> dict[str, Any]:
        aws = AwsSite("lib-aws", aws_args(key))
        azure = AzureSite("lib-azure", azure_args(key))
        args: dict[str, Any] = dict(left=aws.endpoint(), right=azure.endpoint(),
                                    ssh_private_key=ssh_private_key, admin_cidrs=["198.51.100.7/32"])
        args.update(changes)
        pair = Ikev2GatewayPair("lib-vpn", Ikev2GatewayPairArgs(
            **{k: v for k, v in args.items() if v is not None}))  # type: ignore[typeddict-item]
        return {"status": pair.tunnel_status}

    return program


def refused(program: Program, *fragments: str, preview: bool = False, component: str = "") -> LabCloud:
    """Run ``program``; it must fail with every fragment in the message; the lab cloud it ran in."""
    cloud = LabCloud(public_keys={"aws": "k", "azure": "k"}, preview=preview)
    with pytest.raises(ComponentInputError) as caught:
        evaluate(program, {}, set(), cloud=cloud)
    message = str(caught.value)
    assert "While processing input" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from: {message}"
    if component:
        children = [r for r in cloud.registrations if r.custom and f"{component}$" in r.urn]
        assert not children, f"registered before the check: {[r.name for r in children]}"
    return cloud


SITE_MISTAKES = [
    ("local_and_remote_overlap", "aws", {"remote_cidrs": ["172.16.10.0/24"]},
     ("AwsSite 'lib'", "'remote_cidrs[0]'", "172.16.10.0/24", "overlaps", "'vpc_cidr'")),
    ("workload_subnet_outside_vpc", "aws", {"workload_subnet_cidrs": ["10.99.0.0/24"]},
     ("'workload_subnet_cidrs[0]'", "10.99.0.0/24", "outside 'vpc_cidr'")),
    ("subnets_overlap", "azure", {"workload_subnet_cidrs": ["192.168.0.128/25"]},
     ("AzureSite 'lib'", "'gateway_subnet_cidr'", "'workload_subnet_cidrs[0]'", "overlaps")),
    ("gateway_ip_outside_its_subnet", "aws", {"gateway_private_ip": "172.16.5.10"},
     ("'gateway_private_ip'", "172.16.5.10", "outside 'gateway_subnet_cidr'")),
    ("cidr_with_host_bits", "azure", {"vnet_cidr": "192.168.1.0/16"},
     ("'vnet_cidr'", "192.168.1.0/16", "host bits", "192.168.0.0/16")),
    ("ssh_key_type_both_clouds_refuse", "aws", {"ssh_public_key": "ssh-dss AAAAB3NzaC1kc3M= me"},
     ("'ssh_public_key'", "'ssh-dss'", "ssh-ed25519")),
    ("admin_open_to_the_internet", "azure", {"admin_cidrs": ["0.0.0.0/0"]},
     ("'admin_cidrs[0]'", "0.0.0.0/0", "'allow_ssh_from_anywhere'")),
    ("admin_user_invalid", "aws", {"admin_user": "Root User"}, ("'admin_user'", "'Root User'")),
    ("nitro_instance_type", "aws", {"instance_type": "t3.small"}, ("'instance_type'", "'t3.small'", "ENA")),
    ("byo_without_local_cidrs", "azure",
     {"vnet_cidr": None, "gateway_subnet_cidr": None, "workload_subnet_cidrs": None, "vnet_id": "/x",
      "gateway_subnet_id": "/y", "workload_route_table_ids": ["/z"]},
     ("vnet_id needs", "local_cidrs")),
]


@pytest.mark.parametrize("preview", [False, True], ids=["update", "preview"])
@pytest.mark.parametrize(("side", "changes", "fragments"),
                         [pytest.param(s, c, f, id=i) for i, s, c, f in SITE_MISTAKES])
def test_site_mistake_fails_at_construction_naming_argument_and_value(
    ed25519_key: str, side: str, changes: dict[str, Any], fragments: tuple[str, ...], preview: bool
) -> None:
    def program() -> dict[str, Any]:
        if side == "aws":
            AwsSite("lib", aws_args(ed25519_key, **changes))
        else:
            AzureSite("lib", azure_args(ed25519_key, **changes))
        return {}

    component = "AwsSite" if side == "aws" else "AzureSite"
    refused(program, *fragments, preview=preview, component=f"cross-cloud-vpn:index:{component}")


PAIR_MISTAKES = [
    ("psk_without_auth_mode_is_refused_not_dropped", {"psk": PSK},
     ("Ikev2GatewayPair 'lib-vpn'", "'psk' is set", "auth_mode='psk'")),
    ("psk_mode_without_psk", {"auth_mode": IkeAuthMode.PSK}, ("'auth_mode' is 'psk' but no 'psk'",)),
    ("psk_too_short", {"auth_mode": IkeAuthMode.PSK, "psk": "short"}, ("'psk'", "5 characters")),
    ("psk_read_as_hex", {"auth_mode": IkeAuthMode.PSK, "psk": "0x" + "ab" * 16}, ("'psk'", "0x")),
    ("both_passive", {"left_role": IkeRole.PASSIVE, "right_role": IkeRole.PASSIVE},
     ("'left_role'", "'right_role'", "both 'passive'")),
    ("bad_ike_proposal", {"ike_proposal": "enc aes-256-ctr prf hmac-sha2-256 group curve25519"},
     ("'ike_proposal'", "aes-256-ctr")),
    ("bad_child_proposal", {"child_proposals": ["enc aes-256 auth hmac-sha3"]},
     ("'child_proposals[0]'", "hmac-sha3")),
    ("dpd_negative", {"dpd_interval": -1}, ("'dpd_interval'", "-1")),
    ("admin_open_to_the_internet", {"admin_cidrs": ["0.0.0.0/0"]}, ("'admin_cidrs[0]'", "0.0.0.0/0")),
]


@pytest.mark.parametrize("preview", [False, True], ids=["update", "preview"])
@pytest.mark.parametrize(("changes", "fragments"), [pytest.param(c, f, id=i) for i, c, f in PAIR_MISTAKES])
def test_pair_mistake_fails_at_construction_naming_argument_and_value(
    ed25519_key: str, ssh_keypair: tuple[str, str], changes: dict[str, Any], fragments: tuple[str, ...],
    preview: bool
) -> None:
    refused(pair_program(ed25519_key, ssh_keypair[1], **changes), *fragments, preview=preview,
            component="cross-cloud-vpn:index:Ikev2GatewayPair")


def test_two_sides_with_one_name_get_a_hint(ed25519_key: str, ssh_keypair: tuple[str, str]) -> None:
    def program() -> dict[str, Any]:
        one, two = AwsSite("a1", aws_args(ed25519_key)), AwsSite("a2", aws_args(
            ed25519_key, vpc_cidr="10.60.0.0/16", gateway_subnet_cidr="10.60.0.0/24",
            workload_subnet_cidrs=["10.60.1.0/24"], gateway_private_ip="10.60.0.10",
            remote_cidrs=["172.16.10.0/24"]))
        Ikev2GatewayPair("p", Ikev2GatewayPairArgs(
            left=one.endpoint(), right=two.endpoint(), ssh_private_key=ssh_keypair[1],
            admin_cidrs=["198.51.100.7/32"]))
        return {}

    refused(program, "both sides are named 'aws'", 'site.endpoint(site="aws-2")')


def test_remote_cidrs_that_are_not_the_peers_networks_are_refused(
    ed25519_key: str, ssh_keypair: tuple[str, str]
) -> None:
    def program() -> dict[str, Any]:
        aws = AwsSite("lib-aws", aws_args(ed25519_key, remote_cidrs=["192.168.20.0/24"]))
        azure = AzureSite("lib-azure", azure_args(ed25519_key))
        Ikev2GatewayPair("lib-vpn", Ikev2GatewayPairArgs(left=aws.endpoint(), right=azure.endpoint(),
                                                         ssh_private_key=ssh_keypair[1],
                                                         admin_cidrs=["198.51.100.7/32"]))
        return {}

    refused(program, "'aws.remote_cidrs'", "192.168.20.0/24", "'azure.local_cidrs'", "192.168.10.0/24")


def test_output_admin_cidrs_are_checked_when_they_resolve_naming_the_argument(
    ed25519_key: str, ssh_keypair: tuple[str, str]
) -> None:
    # An Output is not iterable: the site must take it, and check it once it resolves.
    refused(lambda: {"x": AwsSite("lib", aws_args(
        ed25519_key, admin_cidrs=pulumi.Output.from_input(["0.0.0.0/0"]))).public_ip},
        "AwsSite 'lib'", "'admin_cidrs[0]'", "0.0.0.0/0")


def test_output_psk_is_checked_when_it_resolves(ed25519_key: str, ssh_keypair: tuple[str, str]) -> None:
    refused(pair_program(ed25519_key, ssh_keypair[1], auth_mode=IkeAuthMode.PSK,
                         psk=pulumi.Output.secret("too-short")), "'psk'", "9 characters")


def test_ed25519_key_and_outputs_for_lists_and_admin_user_are_taken(
    ed25519_key: str, ssh_keypair: tuple[str, str], iked_public_keys: dict[str, str]
) -> None:
    def program() -> dict[str, Any]:
        aws = AwsSite("lib-aws", aws_args(
            ed25519_key, admin_cidrs=pulumi.Output.from_input(["198.51.100.7/32"]),
            remote_cidrs=pulumi.Output.from_input(["192.168.10.0/24"]),
            admin_user=pulumi.Output.from_input("ec2-user")))
        azure = AzureSite("lib-azure", azure_args(ed25519_key, admin_user=pulumi.Output.from_input("obsd")))
        pair = Ikev2GatewayPair("lib-vpn", Ikev2GatewayPairArgs(
            left=aws.endpoint(), right=azure.endpoint(), ssh_private_key=ssh_keypair[1],
            admin_cidrs=pulumi.Output.from_input(["198.51.100.7/32"])))
        return {"aws_conf": pair.left_iked_conf}

    ev = evaluate(program, {}, set(), public_keys=iked_public_keys)
    routes = [r for r in ev.by_type("aws:ec2/route:Route") if r.name != "lib-aws-default"]
    assert [r.inputs["destinationCidrBlock"] for r in routes] == ["192.168.10.0/24"]
    assert [r.name for r in routes] == ["lib-aws-to-192-168-10-0-24"]
    ssh = [r for r in ev.by_type(INGRESS) if "-ssh-" in r.name]
    assert [r.inputs["cidrIpv4"] for r in ssh] == ["198.51.100.7/32"]
    vm = next(r for r in ev.by_type("azure-native:compute:VirtualMachine") if r.name == "lib-azure-gateway")
    keys = vm.inputs["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"]
    assert keys == [{"path": "/home/obsd/.ssh/authorized_keys", "keyData": ed25519_key}]
    assert ev.named("lib-vpn-azure-pubkey").inputs["connection"]["user"] == "obsd"
    assert "from 172.16.10.0/24 to 192.168.10.0/24" in ev.outputs["aws_conf"]


def test_help_shows_each_components_own_text() -> None:
    for component in (AwsSite, AzureSite, Ikev2GatewayPair):
        shown = pydoc.render_doc(component, renderer=pydoc.plaintext)
        assert component.__doc__ and component.__doc__.split("\n")[0] in shown, component.__name__
        assert "Check ``args``" in (component.__init__.__doc__ or ""), f"{component.__name__}.__init__"


def test_azure_byo_ids_and_cidrs_may_be_outputs_of_the_same_program(
    ed25519_key: str, iked_public_keys: dict[str, str]
) -> None:
    # A route table made in the same program: its id is an Output (once "'Output' object is not
    # callable"); the VNet's address space from a lookup is an Output list.
    table_id = pulumi.Output.from_input(
        "/subscriptions/0/resourceGroups/spoke-net/providers/Microsoft.Network/routeTables/spokes")

    def program() -> dict[str, Any]:
        site = AzureSite("byo", azure_args(
            ed25519_key, vnet_cidr=None, gateway_subnet_cidr=None, workload_subnet_cidrs=None,
            gateway_private_ip=None, vnet_id=pulumi.Output.from_input("/subscriptions/0/vnet"),
            gateway_subnet_id=pulumi.Output.from_input("/subscriptions/0/vnet/subnets/gw"),
            workload_route_table_ids=[table_id], local_cidrs=pulumi.Output.from_input(["192.168.0.0/16"])))
        return {"cidrs": site.local_cidrs}

    ev = evaluate(program, {}, set(), public_keys=iked_public_keys)
    routes = ev.by_type("azure-native:network:Route")
    assert [(r.inputs["resourceGroupName"], r.inputs["routeTableName"], r.inputs["addressPrefix"])
            for r in routes] == [("spoke-net", "spokes", "172.16.10.0/24")]
    assert ev.outputs["cidrs"] == ["192.168.0.0/16"]
    assert not ev.by_type("azure-native:network:VirtualNetwork")


def test_output_route_table_id_that_is_not_one_is_refused_naming_it(ed25519_key: str) -> None:
    refused(lambda: {"x": AzureSite("byo", azure_args(
        ed25519_key, vnet_cidr=None, gateway_subnet_cidr=None, workload_subnet_cidrs=None,
        gateway_private_ip=None, vnet_id="/subscriptions/0/vnet", gateway_subnet_id="/s",
        workload_route_table_ids=[pulumi.Output.from_input("rtb-not-azure")],
        local_cidrs=["192.168.0.0/16"])).vm_id},
        "AzureSite 'byo'", "'workload_route_table_ids[0]'", "rtb-not-azure")


def test_every_problem_of_a_site_is_reported_at_once(ed25519_key: str) -> None:
    def program() -> dict[str, Any]:
        AwsSite("lib", aws_args(ed25519_key, instance_type="c5.large", remote_cidrs=["172.16.10.0/24"],
                                admin_cidrs=["0.0.0.0/0"]))
        return {}

    cloud = refused(program, "'instance_type' is 'c5.large'", "'remote_cidrs[0]'", "'admin_cidrs[0]'")
    assert not [r for r in cloud.registrations if r.custom]
