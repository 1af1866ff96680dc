"""Every `pulumi up` after the first: the program evaluated twice, the way the engine sees two `up`s.

The lab cloud plays the engine's part on the second evaluation (``evaluate(previous=...)``):
it applies ``ignore_changes``, replaces on force-new inputs, ``replace_on_changes`` and command
triggers, and says per resource what would happen (``Evaluation.changes()``). A fresh `up` under
mocks cannot show any of this: mocks never replace anything.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Collection
from typing import Any

import pytest

from cross_cloud_vpn.lab_cloud import DEFAULT_LOOKUPS, Evaluation, evaluate
from cross_cloud_vpn.openbsd import parse_bootstrap
from cross_cloud_vpn.program import build

P = "cross-cloud-vpn:"
SECRET_KEYS = {P + "sshPrivateKey", P + "psk"}
PREFIX = "ccvpn-dev"
INSTANCE = "aws:ec2/instance:Instance"
VM = "azure-native:compute:VirtualMachine"
COMMAND = "command:remote:Command"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SSH_STEPS = ("wait-ssh", "pubkey", "configure", "check")

Up = Callable[..., Evaluation]


@pytest.fixture(scope="module")
def fresh_iked_key(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], str]:
    """A new gateway's iked public key (a replaced machine makes its own at first boot)."""
    folder = tmp_path_factory.mktemp("new-keys")

    def make() -> str:
        key, pub = folder / "k.pem", folder / "k.pub"
        subprocess.run(["openssl", "ecparam", "-genkey", "-name", "prime256v1", "-out", str(key)],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)],
                       check=True, capture_output=True)
        return pub.read_text()

    return make


@pytest.fixture()
def up(dev_config: tuple[dict[str, str], set[str]], iked_public_keys: dict[str, str]) -> Up:
    """One `pulumi up` of the dev stack: ``changes`` edits config objects, ``previous`` is the last up."""

    def runner(previous: Evaluation | None = None, keys: dict[str, str] | None = None,
               lookups: dict[str, dict[str, Any]] | None = None,
               replace: Collection[tuple[str, str]] = (),
               **changes: dict[str, Any] | list[str]) -> Evaluation:
        values = dict(dev_config[0])
        for key, change in changes.items():
            if isinstance(change, dict):
                values[P + key] = json.dumps({**json.loads(values[P + key]), **change})
            else:
                values[P + key] = json.dumps(change)
        return evaluate(build, values, SECRET_KEYS, public_keys={**iked_public_keys, **(keys or {})},
                        lookups=lookups, previous=previous, replace=replace)

    return runner


def _commands(ev: Evaluation, site: str) -> dict[str, str]:
    """What happens to each SSH step of one side: step -> action."""
    return {step: ev.named(f"-tunnel-{site}-{step}").action for step in SSH_STEPS}


def test_second_up_with_nothing_changed_reruns_no_command_and_touches_no_resource(up: Up) -> None:
    first = up()
    second = up(previous=first)
    assert second.changes() == {}, f"an unchanged `up` would change: {second.changes()}"
    before = {r.key: r.stored_inputs for r in first.by_type(COMMAND)}
    for cmd in second.by_type(COMMAND):
        assert cmd.stored_inputs.get("triggers") == before[cmd.key].get("triggers"), cmd.name
        assert cmd.stored_inputs.get("stdin") == before[cmd.key].get("stdin"), cmd.name
    assert second.outputs == first.outputs


@pytest.mark.parametrize(
    ("site", "peer", "machine"),
    [("aws", "azure", (INSTANCE, f"{PREFIX}-aws-gateway")),
     ("azure", "aws", (VM, f"{PREFIX}-azure-gateway"))],
)
def test_replaced_gateway_is_configured_again_and_its_peer_learns_its_new_key(
    up: Up, fresh_iked_key: Callable[[], str], site: str, peer: str, machine: tuple[str, str]
) -> None:
    first = up()
    new_key = fresh_iked_key()
    second = up(previous=first, replace=[machine], keys={site: new_key})
    assert second.changes()[machine] == "replace"
    # The new machine has stock pf and no iked.conf: every SSH step of its side runs again.
    assert set(_commands(second, site).values()) == {"replace"}, _commands(second, site)
    # The peer gets the new machine's key (configure again) and checks the tunnel again ...
    peer_steps = _commands(second, peer)
    assert peer_steps["configure"] in {"update", "replace"} and peer_steps["check"] in {"update", "replace"}
    # ... but its machine is not touched, so neither is its SSH wait nor its own key.
    assert peer_steps["wait-ssh"] == peer_steps["pubkey"] == "same", peer_steps
    pushed = parse_bootstrap(second.named(f"-tunnel-{peer}-configure").inputs["stdin"]).files
    keys = [content for path, (content, _) in pushed.items() if path.startswith("/etc/iked/pubkeys/")]
    assert keys == [new_key.strip() + "\n"], "the peer must trust the new machine's key, not the old one's"
    assert second.outputs[f"{site}_public_ip"] == first.outputs[f"{site}_public_ip"]


def test_machines_with_a_fixed_private_ip_are_deleted_before_they_are_replaced(up: Up) -> None:
    ev = up()
    fixed = [r for r in ev.by_type(INSTANCE) if r.inputs.get("privateIp")]
    assert {r.name for r in fixed} == {f"{PREFIX}-aws-gateway", f"{PREFIX}-aws-test-vm"}
    for r in [*fixed, *ev.by_type("aws:ec2/eipAssociation:EipAssociation"), *ev.by_type(VM)]:
        assert r.delete_before_replace, f"{r.urn}: a replacement would collide with the old one"


def test_newer_image_published_replaces_no_machine(up: Up) -> None:
    first = up()
    newer = {**DEFAULT_LOOKUPS["aws:ec2/getAmi:getAmi"], "id": "ami-0fedcba9876543210"}
    second = up(previous=first, lookups={"aws:ec2/getAmi:getAmi": newer})
    assert second.changes() == {}, f"a newly published AMI would change: {second.changes()}"
    assert {r.inputs["ami"] for r in second.by_type(INSTANCE)} == {
        DEFAULT_LOOKUPS["aws:ec2/getAmi:getAmi"]["id"]
    }


def test_new_ami_name_filter_replaces_the_gateway_on_purpose_deleting_it_first(up: Up) -> None:
    first = up()
    newer = {**DEFAULT_LOOKUPS["aws:ec2/getAmi:getAmi"], "id": "ami-0fedcba9876543210"}
    second = up(previous=first, lookups={"aws:ec2/getAmi:getAmi": newer},
                aws={"amiNameFilter": "openbsd-7.8-amd64-*"})
    gateway = next(r for r in second.by_type(INSTANCE) if r.name == f"{PREFIX}-aws-gateway")
    assert gateway.action == "replace" and gateway.inputs["ami"] == "ami-0fedcba9876543210"
    assert gateway.delete_before_replace
    test_vm = next(r for r in second.by_type(INSTANCE) if r.name == f"{PREFIX}-aws-test-vm")
    assert test_vm.action == "same", "the test VM's own image choice did not change"
    assert set(_commands(second, "aws").values()) == {"replace"}


def test_new_azure_image_replaces_the_vm_deleting_it_first_and_keeps_its_nic(up: Up) -> None:
    first = up()
    image = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/img/providers/" \
            "Microsoft.Compute/images/openbsd-7.8"
    second = up(previous=first, azure={"imageId": image})
    changes = second.changes()
    assert changes[(VM, f"{PREFIX}-azure-gateway")] == "replace", changes
    vm = next(r for r in second.by_type(VM) if r.name == f"{PREFIX}-azure-gateway")
    assert vm.delete_before_replace
    assert vm.inputs["storageProfile"]["imageReference"]["id"] == image
    nics = vm.inputs["networkProfile"]["networkInterfaces"]
    assert [n["deleteOption"] for n in nics] == ["Detach"], "the NIC and its fixed IP must outlive the old VM"
    assert ("azure-native:network:NetworkInterface", f"{PREFIX}-azure-gateway-nic") not in changes


def _cloud(changes: dict[tuple[str, str], str]) -> dict[tuple[str, str], str]:
    return {k: v for k, v in changes.items() if k[0] != COMMAND}


def _reconfigured_only(ev: Evaluation) -> None:
    """Both gateways get their changed files (configure) and check again; no machine is touched."""
    for site in ("aws", "azure"):
        steps = _commands(ev, site)
        assert steps["wait-ssh"] == steps["pubkey"] == "same", steps
        assert steps["configure"] != "same" and steps["check"] != "same", steps


def test_admin_cidr_added_in_front_touches_only_its_own_resources(up: Up) -> None:
    first = up()
    cidrs = [r.inputs["cidrIpv4"] for r in first.by_type(INGRESS) if r.inputs.get("fromPort") == 22]
    second = up(previous=first, adminCidrs=["192.0.2.128/25", *cidrs])
    changes = _cloud(second.changes())
    # One new AWS rule; the Azure SSH rule holds the whole list and is updated in place.
    assert changes == {
        (INGRESS, f"{PREFIX}-aws-ssh-192-0-2-128-25"): "create",
        ("azure-native:network:SecurityRule", f"{PREFIX}-azure-ssh"): "update",
    }, changes
    _reconfigured_only(second)


def test_workload_subnet_added_in_front_touches_only_its_own_resources(up: Up) -> None:
    first = up(aws={"testVm": False})
    cidrs = [r.inputs["cidrBlock"] for r in first.by_type("aws:ec2/subnet:Subnet")
             if r.inputs["cidrBlock"] != "10.10.0.0/24"]
    second = up(previous=first, aws={"testVm": False, "workloadSubnetCidrs": ["10.10.9.0/24", *cidrs]})
    changes = _cloud(second.changes())
    created = {k for k, v in changes.items() if v == "create"}
    assert all(name.endswith("10-10-9-0-24") for _, name in created), created
    assert {t for t, _ in created} == {
        "aws:ec2/subnet:Subnet", "aws:ec2/routeTableAssociation:RouteTableAssociation",
        INGRESS, "azure-native:network:Route",
    }, created
    # What holds the CIDR lists (Azure NSG rules) is updated in place; nothing is replaced or deleted.
    assert {k for k, v in changes.items() if v != "create"} == {
        ("azure-native:network:SecurityRule", f"{PREFIX}-azure-forward"),
        ("azure-native:network:SecurityRule", f"{PREFIX}-azure-workload-from-remote"),
    }, changes
    assert set(changes.values()) <= {"create", "update"}
    _reconfigured_only(second)
