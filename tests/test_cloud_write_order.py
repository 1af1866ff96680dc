"""What the clouds refuse on a real `up` that mocks accept: write order, dependencies, and the
options and inputs that make an Azure VM or an AWS gateway work. Each test names its source.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from cross_cloud_vpn.lab_cloud import Evaluation, Registration, evaluate
from cross_cloud_vpn.openbsd.platform import XEN_INSTANCE_FAMILIES, instance_type_problem
from cross_cloud_vpn.program import build

P = "cross-cloud-vpn:"
SECRET_KEYS = {P + "sshPrivateKey", P + "psk"}


@pytest.fixture()
def run(dev_config: tuple[dict[str, str], set[str]], iked_public_keys: dict[str, str]
        ) -> Callable[..., Evaluation]:
    def runner(**changes: dict[str, Any]) -> Evaluation:
        values = dict(dev_config[0])
        for key, change in changes.items():
            values[P + key] = json.dumps({**json.loads(values[P + key]), **change})
        return evaluate(build, values, SECRET_KEYS, public_keys=iked_public_keys)

    return runner


def _one(ev: Evaluation, typ: str, name: str) -> Registration:
    found = [r for r in ev.by_type(typ) if r.name == name]
    assert len(found) == 1, [r.name for r in ev.by_type(typ)]
    return found[0]


def _waits_for(r: Registration, other: Registration) -> bool:
    """Whether ``r`` is created only after ``other`` (a dependency or an input taken from it)."""
    return other.urn in r.dependencies or any(other.urn in urns for urns in r.property_dependencies.values())


def test_elastic_ip_and_its_association_wait_for_the_internet_gateway(run: Callable[..., Evaluation]) -> None:
    # Gateway.NotAttached: an EIP in a VPC needs the internet gateway attached
    # (terraform-provider-aws aws_eip docs: "may require depends_on the IGW").
    ev = run()
    igw = _one(ev, "aws:ec2/internetGateway:InternetGateway", "ccvpn-dev-aws-igw")
    for typ in ("aws:ec2/eip:Eip", "aws:ec2/eipAssociation:EipAssociation"):
        assert _waits_for(_one(ev, typ, "ccvpn-dev-aws-gateway"), igw), typ


def test_azure_writes_one_rule_and_one_route_at_a_time(run: Callable[..., Evaluation]) -> None:
    # AnotherOperationInProgress / 429: Azure serializes writes to one NSG and one route table.
    ev = run(aws={"workloadSubnetCidrs": ["10.10.1.0/24", "10.10.2.0/24", "10.10.3.0/24"]})
    rule = "azure-native:network:SecurityRule"
    ssh, forward = _one(ev, rule, "ccvpn-dev-azure-ssh"), _one(ev, rule, "ccvpn-dev-azure-forward")
    vm = _one(ev, "azure-native:compute:VirtualMachine", "ccvpn-dev-azure-gateway")
    ike = _one(ev, rule, "ccvpn-dev-tunnel-azure-from-aws-ike")
    esp = _one(ev, rule, "ccvpn-dev-tunnel-azure-from-aws-esp")
    chain = [ssh, forward, vm, ike, esp]
    for later, earlier in zip(chain[1:], chain, strict=False):
        assert _waits_for(later, earlier), f"{later.name} must wait for {earlier.name}"
    routes = ev.by_type("azure-native:network:Route")
    assert len(routes) == 3
    waits = sum(any(_waits_for(r, other) for other in routes if other is not r) for r in routes)
    assert waits == 2, "each route but the first waits for another one"


def test_dpd_interval_zero_reaches_iked_as_zero(run: Callable[..., Evaluation]) -> None:
    ev = run(tunnel={"dpdInterval": 0})
    for side in ("aws", "azure"):
        assert "set dpd_check_interval 0\n" in ev.outputs[f"{side}_iked_conf"], side


def test_tunnel_check_fails_the_update_unless_turned_off(run: Callable[..., Evaluation]) -> None:
    strict = run().named("-tunnel-aws-check").inputs["stdin"]
    lenient = run(tunnel={"requireUp": False}).named("-tunnel-aws-check").inputs["stdin"]
    assert strict != lenient, "requireUp must reach the check script"


def test_specialized_azure_image_gets_no_os_profile(run: Callable[..., Evaluation]) -> None:
    # A specialized gallery image refuses an OS profile: InvalidParameter "Parameter 'osProfile'
    # is not allowed." (github.com/Azure/azure-sdk-for-java/issues/11912,
    # github.com/hashicorp/terraform-provider-azurerm/issues/22968).
    generalized = _one(run(), "azure-native:compute:VirtualMachine", "ccvpn-dev-azure-gateway")
    assert generalized.inputs["osProfile"]["adminUsername"] == "azure-user"
    specialized = _one(run(azure={"imageSpecialized": True}), "azure-native:compute:VirtualMachine",
                       "ccvpn-dev-azure-gateway")
    assert "osProfile" not in specialized.inputs


def test_gateway_runs_on_a_xen_type_and_keeps_imdsv1_for_openbsds_cloud_agent(
    run: Callable[..., Evaluation]
) -> None:
    gateway = _one(run(), "aws:ec2/instance:Instance", "ccvpn-dev-aws-gateway")
    assert gateway.inputs["instanceType"].split(".")[0] in XEN_INSTANCE_FAMILIES
    assert gateway.inputs["metadataOptions"]["httpTokens"] == "optional"
    assert gateway.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1


@pytest.mark.parametrize(("instance_type", "boots"), [
    ("t2.small", True), ("m4.large", True), ("i3.large", True), ("x1e.xlarge", True),
    ("t3.small", False), ("t3a.small", False), ("m5.large", False), ("c5.large", False),
    ("m6i.large", False), ("i3en.large", False), ("p3dn.24xlarge", False),
])
def test_only_xen_instance_families_pass_the_instance_type_check(instance_type: str, boots: bool) -> None:
    assert (instance_type_problem(instance_type) is None) is boots


def test_aws_site_component_refuses_a_nitro_type_without_the_ena_opt_in(
    ssh_keypair: tuple[str, str]
) -> None:
    from cross_cloud_vpn.components import AwsSite, AwsSiteArgs
    from cross_cloud_vpn.components.site import ComponentInputError

    def program(instance_type: str, has_ena: bool) -> Callable[[], dict[str, Any]]:
        def body() -> dict[str, Any]:
            site = AwsSite("lib", AwsSiteArgs(
                vpc_cidr="10.50.0.0/16", gateway_subnet_cidr="10.50.0.0/24",
                workload_subnet_cidrs=["10.50.1.0/24"], remote_cidrs=["10.60.1.0/24"],
                admin_cidrs=["192.0.2.0/24"], ssh_public_key=ssh_keypair[0], ami_id="ami-0123456789abcdef0",
                instance_type=instance_type, image_has_ena=has_ena))
            return {"ip": site.public_ip}
        return body

    with pytest.raises(ComponentInputError, match=r"AwsSite 'lib': 'instance_type' is 'c5.large'.*ENA"):
        evaluate(program("c5.large", False), {}, set())
    ev = evaluate(program("c5.large", True), {}, set())
    assert _one(ev, "aws:ec2/instance:Instance", "lib-gateway").inputs["instanceType"] == "c5.large"
