"""The whole program from Pulumi.dev.yaml, registered by the real Pulumi SDK against the lab cloud.

The SDK's generated provider classes reject unknown and missing properties, so a clean
registration proves the program's shape; the assertions pin the inputs that make the
tunnel work and keep it closed.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest

from cross_cloud_vpn.lab_cloud import Evaluation, Registration, evaluate
from cross_cloud_vpn.openbsd import parse_bootstrap
from cross_cloud_vpn.program import build
from tests.conftest import PSK

P = "cross-cloud-vpn:"
SECRET_KEYS = {P + "sshPrivateKey", P + "psk"}
AWS_MOCK_IP, AZURE_MOCK_IP = "198.51.100.10", "203.0.113.20"


@pytest.fixture()
def run(dev_config: tuple[dict[str, str], set[str]], iked_public_keys: dict[str, str]
        ) -> Callable[..., Evaluation]:
    def runner(preview: bool = False, psk: bool = False, cidrs: int = 1,
               keys: dict[str, str] | None = None, **top: str) -> Evaluation:
        values = dict(dev_config[0])
        if psk:
            tunnel = json.loads(values[P + "tunnel"])
            tunnel["authMode"] = "psk"
            values[P + "tunnel"] = json.dumps(tunnel)
            values[P + "psk"] = PSK
        if cidrs > 1:
            for side, base in (("aws", 10), ("azure", 20)):
                obj = json.loads(values[P + side])
                obj["workloadSubnetCidrs"] = [f"10.{base}.{i}.0/24" for i in range(1, cidrs + 1)]
                values[P + side] = json.dumps(obj)
        values.update({P + k: v for k, v in top.items()})
        return evaluate(build, values, SECRET_KEYS, preview=preview,
                        public_keys=keys or iked_public_keys)

    return runner


def pushed_files(ev: Evaluation, site: str) -> dict[str, tuple[str, int]]:
    stdin = ev.named(f"-tunnel-{site}-configure").inputs["stdin"]
    return parse_bootstrap(stdin).files


def iked_accepts(text: str, tmp_path: Path) -> tuple[bool, str]:
    path = tmp_path / "iked.conf"
    path.write_text(text)
    path.chmod(0o600)
    result = subprocess.run([shutil.which("iked") or "/usr/sbin/iked", "-n", "-f", str(path)],
                            capture_output=True, text=True, timeout=30)
    return result.returncode == 0, result.stderr


# --- shape ----------------------------------------------------------------------------------

def test_dev_stack_registers_and_exports_every_documented_output(run: Callable[..., Evaluation]) -> None:
    ev = run()
    assert set(ev.outputs) >= {
        "aws_public_ip", "azure_public_ip", "aws_gateway_private_ip", "azure_gateway_private_ip",
        "aws_cidrs", "azure_cidrs", "aws_iked_conf", "azure_iked_conf", "aws_pf_conf", "azure_pf_conf",
        "ssh_aws", "ssh_azure", "tunnel_status",
    }
    assert ev.outputs["aws_public_ip"] == AWS_MOCK_IP and ev.outputs["azure_public_ip"] == AZURE_MOCK_IP
    assert ev.outputs["ssh_aws"] == f"ssh ec2-user@{AWS_MOCK_IP}"
    assert ev.outputs["ssh_azure"] == f"ssh azure-user@{AZURE_MOCK_IP}"
    assert "not checked" in ev.outputs["tunnel_status"], "the lab cloud must not claim a tunnel"


def test_every_resource_is_parented_to_a_component(run: Callable[..., Evaluation]) -> None:
    ev = run()
    roots = [r for r in ev.resources if r.parent.split("::")[2].split("$")[-1] == "pulumi:pulumi:Stack"]
    assert {r.type for r in roots} == {
        "pulumi:providers:aws", "pulumi:providers:azure-native", "cross-cloud-vpn:index:AwsSite",
        "cross-cloud-vpn:index:AzureSite", "cross-cloud-vpn:index:Ikev2GatewayPair",
        "cross-cloud-vpn:index:PinnedAmi",
    }, [r.urn for r in roots]
    assert len(ev.resources) > 40


def test_preview_registers_the_same_resources_with_unknown_computed_values(
    run: Callable[..., Evaluation]
) -> None:
    update, preview = run(), run(preview=True)
    assert sorted((r.type, r.name) for r in preview.resources) == sorted(
        (r.type, r.name) for r in update.resources
    )
    assert {"aws_public_ip", "azure_public_ip", "aws_iked_conf", "tunnel_status"} <= preview.unknown_outputs


# --- routing and forwarding -----------------------------------------------------------------

@pytest.mark.parametrize("cidrs", [1, 3])
def test_every_remote_cidr_is_routed_to_the_gateway_on_both_clouds(
    run: Callable[..., Evaluation], cidrs: int
) -> None:
    ev = run(cidrs=cidrs)
    aws_remote = {f"10.20.{i}.0/24" for i in range(1, cidrs + 1)}
    azure_remote = {f"10.10.{i}.0/24" for i in range(1, cidrs + 1)}
    gateway = next(r for r in ev.by_type("aws:ec2/instance:Instance") if r.name.endswith("-aws-gateway"))
    eni = gateway.state["primaryNetworkInterfaceId"]
    aws_routes = [r for r in ev.by_type("aws:ec2/route:Route") if r.name != "ccvpn-dev-aws-default"]
    assert {r.inputs["destinationCidrBlock"] for r in aws_routes} == aws_remote
    for route in aws_routes:
        assert route.inputs["networkInterfaceId"] == eni, route.urn
    workload_rt = next(r for r in ev.by_type("aws:ec2/routeTable:RouteTable") if r.name.endswith("-workload"))
    assocs = [r for r in ev.by_type("aws:ec2/routeTableAssociation:RouteTableAssociation")
              if "-workload-" in r.name]
    assert len(assocs) == cidrs
    assert all(workload_rt.urn in a.property_dependencies["routeTableId"] for a in assocs)

    azure_routes = ev.by_type("azure-native:network:Route")
    assert {r.inputs["addressPrefix"] for r in azure_routes} == azure_remote
    for route in azure_routes:
        assert route.inputs["nextHopType"] == "VirtualAppliance", route.urn
        assert route.inputs["nextHopIpAddress"] == "10.20.0.10", route.urn
    workload_subnets = [r for r in ev.by_type("azure-native:network:Subnet") if "-workload-" in r.name]
    assert len(workload_subnets) == cidrs
    for subnet in workload_subnets:
        assert "routeTable" in subnet.inputs and subnet.inputs["routeTable"]["id"], subnet.urn


def test_gateways_forward_source_dest_check_off_and_ip_forwarding_on(run: Callable[..., Evaluation]) -> None:
    ev = run()
    gateway = next(r for r in ev.by_type("aws:ec2/instance:Instance") if r.name.endswith("-aws-gateway"))
    assert gateway.inputs["sourceDestCheck"] is False, gateway.urn
    assert gateway.inputs["privateIp"] == "10.10.0.10"
    nic = next(r for r in ev.by_type("azure-native:network:NetworkInterface") if "gateway" in r.name)
    assert nic.inputs["enableIPForwarding"] is True, nic.urn
    assert nic.inputs["ipConfigurations"][0]["privateIPAddress"] == "10.20.0.10"


def test_azure_public_ip_is_static_standard_sku(run: Callable[..., Evaluation]) -> None:
    (pip,) = run().by_type("azure-native:network:PublicIPAddress")
    assert pip.inputs["sku"]["name"] == "Standard", pip.urn
    assert pip.inputs["publicIPAllocationMethod"] == "Static", pip.urn


# --- firewall rules ---------------------------------------------------------------------------

def test_ike_and_esp_rules_admit_only_the_peer_public_ip(run: Callable[..., Evaluation]) -> None:
    ev = run()
    aws_ike = [r for r in ev.by_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
               if "-from-azure-" in r.name]
    assert {(r.inputs["ipProtocol"], r.inputs.get("fromPort")) for r in aws_ike} == {
        ("udp", 500), ("udp", 4500), ("50", None)}
    for rule in aws_ike:
        assert rule.inputs["cidrIpv4"] == f"{AZURE_MOCK_IP}/32", rule.urn
        assert "-tunnel" in rule.parent, f"{rule.urn} must belong to the pair"
    azure_ike = [r for r in ev.by_type("azure-native:network:SecurityRule") if "-from-aws-" in r.name]
    assert {r.inputs["protocol"] for r in azure_ike} == {"Udp", "Esp"}
    for rule in azure_ike:
        assert rule.inputs["sourceAddressPrefixes"] == [f"{AWS_MOCK_IP}/32"], rule.urn
        assert "-tunnel" in rule.parent, f"{rule.urn} must belong to the pair"
    udp = next(r for r in azure_ike if r.inputs["protocol"] == "Udp")
    assert sorted(udp.inputs["destinationPortRanges"]) == ["4500", "500"]


def test_ssh_only_from_admin_cidrs(run: Callable[..., Evaluation]) -> None:
    ev = run()
    aws_ssh = [r for r in ev.by_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
               if r.inputs.get("fromPort") == 22]
    assert [r.inputs["cidrIpv4"] for r in aws_ssh] == ["192.0.2.0/24"]
    azure_ssh = [r for r in ev.by_type("azure-native:network:SecurityRule")
                 if r.inputs.get("destinationPortRange") == "22"]
    assert [r.inputs["sourceAddressPrefixes"] for r in azure_ssh] == [["192.0.2.0/24"]]


def _sources(rule: Registration) -> list[str]:
    inputs = rule.inputs
    return [s for s in [inputs.get("cidrIpv4"), inputs.get("sourceAddressPrefix"),
                        *(inputs.get("sourceAddressPrefixes") or [])] if s]


def test_nothing_is_open_to_the_internet_but_egress(run: Callable[..., Evaluation]) -> None:
    ev = run()
    rules = ev.by_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") + [
        r for r in ev.by_type("azure-native:network:SecurityRule") if r.inputs["direction"] == "Inbound"]
    assert rules
    for rule in rules:
        for source in _sources(rule):
            assert source not in ("*", "Internet", "Any"), f"{rule.urn} is open to {source}"
            assert ipaddress.ip_network(source).prefixlen != 0, f"{rule.urn} is open to {source}"
    egress = ev.by_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    assert egress and all(r.inputs["cidrIpv4"] == "0.0.0.0/0" for r in egress)


# --- what the gateways receive ------------------------------------------------------------------

@pytest.mark.parametrize("psk", [False, True], ids=["pubkey", "psk"])
def test_pushed_iked_conf_names_the_other_side_and_passes_real_iked(
    run: Callable[..., Evaluation], tmp_path: Path, psk: bool
) -> None:
    ev = run(psk=psk)
    expected = {"aws": ("10.10.0.10", AWS_MOCK_IP, AZURE_MOCK_IP),
                "azure": ("10.20.0.10", AZURE_MOCK_IP, AWS_MOCK_IP)}
    for site, (private, public, peer) in expected.items():
        text, mode = pushed_files(ev, site)["/etc/iked.conf"]
        assert mode == 0o600
        assert f"local {private} peer {peer}" in text, f"{site}:\n{text}"
        assert f'srcid "{public}" dstid "{peer}"' in text, f"{site}:\n{text}"
        assert ev.outputs[f"{site}_iked_conf"] == text, "the export must be the exact text pushed"
        ok, err = iked_accepts(text, tmp_path)
        assert ok, f"real iked -n rejected the {site} file: {err}"


def test_pubkey_mode_installs_each_peers_key_and_no_secret(
    run: Callable[..., Evaluation], iked_public_keys: dict[str, str]
) -> None:
    ev = run()
    aws_files, azure_files = pushed_files(ev, "aws"), pushed_files(ev, "azure")
    assert aws_files[f"/etc/iked/pubkeys/ipv4/{AZURE_MOCK_IP}"][0] == iked_public_keys["azure"]
    assert azure_files[f"/etc/iked/pubkeys/ipv4/{AWS_MOCK_IP}"][0] == iked_public_keys["aws"]
    assert "psk" not in aws_files["/etc/iked.conf"][0]
    assert "aws_iked_conf" not in ev.secret_outputs


def test_configure_reruns_exactly_when_a_pushed_file_changes(
    run: Callable[..., Evaluation], iked_public_keys: dict[str, str]
) -> None:
    # A changed input (stdin: every pushed file) re-runs a command; tests/test_lifecycle.py plays
    # the engine's part on a second `up`.
    def inputs(ev: Evaluation) -> dict[str, Any]:
        return {s: ev.named(f"-tunnel-{s}-configure").inputs for s in ("aws", "azure")}

    first, again = inputs(run()), inputs(run())
    assert first == again, "same inputs must not re-run the bootstrap"
    rotated = inputs(run(keys={**iked_public_keys, "azure": iked_public_keys["aws"]}))
    assert rotated["aws"]["stdin"] != first["aws"]["stdin"], "a new Azure key must re-run the AWS bootstrap"
    assert rotated["azure"] == first["azure"]


def test_commands_send_scripts_on_stdin_to_doas_sh(run: Callable[..., Evaluation]) -> None:
    ev = run(psk=True)
    for cmd in ev.by_type("command:remote:Command"):
        if cmd.name.endswith("-wait-ssh"):
            assert cmd.inputs["connection"]["dialErrorLimit"] == -1, cmd.urn
            continue
        # -n: an image whose doas wants a password fails at once instead of hanging.
        assert cmd.inputs["create"] == "doas -n /bin/sh -s", cmd.urn
        assert PSK not in cmd.inputs["create"]


# --- secrets ------------------------------------------------------------------------------------

def _plain_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _plain_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _plain_strings(v)]
    return []


def test_ssh_key_and_psk_are_secret_wherever_they_are_held(
    run: Callable[..., Evaluation], ssh_keypair: tuple[str, str]
) -> None:
    ev = run(psk=True)
    private_key = ssh_keypair[1].strip().splitlines()[1]
    for res in ev.resources:
        for prop, value in res.inputs.items():
            text = "\n".join(_plain_strings(value))
            if private_key in text or PSK in text:
                assert prop in res.secret_inputs, f"{res.urn}: input {prop} holds a secret in plain"
    commands = ev.by_type("command:remote:Command")
    assert commands and all("connection" in c.secret_inputs for c in commands)
    for site in ("aws", "azure"):
        assert "stdin" in ev.named(f"-tunnel-{site}-configure").secret_inputs
        assert f"{site}_iked_conf" in ev.secret_outputs
    for key, value in ev.outputs.items():
        if key not in ev.secret_outputs:
            text = "\n".join(_plain_strings(value))
            assert PSK not in text and private_key not in text, f"plain output {key} holds a secret"


def test_outputs_are_secret_as_outputs_under_the_sdk(run: Callable[..., Evaluation]) -> None:
    """Output.is_secret, asserted through the SDK itself on the pair's PSK-mode export."""
    ev = run(psk=True)
    assert {"aws_iked_conf", "azure_iked_conf"} <= ev.secret_outputs
    assert "aws_public_ip" not in ev.secret_outputs
    assert isinstance(pulumi.Output.secret("x"), pulumi.Output)


# --- independence of the clouds -------------------------------------------------------------------

def _closure(ev: Evaluation, start: Registration) -> set[str]:
    by_urn = {r.urn: r for r in ev.resources}
    children: dict[str, list[str]] = {}
    for r in ev.resources:
        children.setdefault(r.parent, []).append(r.urn)
    seen: set[str] = set()
    todo = [*start.dependencies, *(u for us in start.property_dependencies.values() for u in us)]
    while todo:
        urn = todo.pop()
        if urn in seen or urn not in by_urn:
            continue
        seen.add(urn)
        res = by_urn[urn]
        todo += res.dependencies + [u for us in res.property_dependencies.values() for u in us]
        todo += children.get(urn, [])  # waiting on a component waits on all its children
    return seen


def test_no_gateway_or_vm_waits_for_the_other_cloud(run: Callable[..., Evaluation]) -> None:
    ev = run()
    machines = ev.by_type("aws:ec2/instance:Instance") + ev.by_type("azure-native:compute:VirtualMachine")
    assert len(machines) == 4
    by_urn = {r.urn: r for r in ev.resources}
    for machine in machines:
        own = "aws:" if machine.type.startswith("aws:") else "azure-native:"
        other = "azure-native:" if own == "aws:" else "aws:"
        crossed = [u for u in _closure(ev, machine) if by_urn[u].type.startswith(other)]
        assert not crossed, f"{machine.urn} waits for {crossed}"


# --- bad config -----------------------------------------------------------------------------------

def test_bad_config_fails_before_any_resource_is_registered(run: Callable[..., Evaluation]) -> None:
    with pytest.raises(Exception) as caught:
        run(adminCidrs='["0.0.0.0/0"]')
    assert "adminCidrs[0]" in str(caught.value) and "0.0.0.0/0" in str(caught.value)
    assert caught.type.__name__ in ("RunError", "RunException") or "RunError" in repr(caught.value)
