"""The components as a Pulumi component package: the schema the SDK's own analyzer infers.

``provider/`` is the plugin (``PulumiPlugin.yaml`` + ``__main__.py`` calling
``component_provider_host``); a TypeScript or YAML program gets the components with
``pulumi package add <repo>/provider``. The analyzer (``pulumi.provider.experimental``) reads
the type annotations of each component's ``args`` and of the component class itself, so every
input and output must be in a shape it understands.

The "target shape" tests are the control: the same assertions pass on components written the
way the analyzer wants, and pin the SDK behaviours that decide that shape (args arrive as a
dict, integers as floats, maps of enums are lost), so an SDK upgrade that changes them shows
up here.

No ``from __future__ import annotations`` in this file nor in components/: the analyzer
cannot read string annotations.
"""

import dataclasses
import enum
import inspect
import json
import os
import runpy
import select
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

import pulumi
import pytest
from pulumi.provider.experimental.analyzer import Analyzer, PropertyType
from pulumi.provider.experimental.component import ComponentProvider

from cross_cloud_vpn import components as components_module
from cross_cloud_vpn.component_reference import SteadyAnalyzer
from cross_cloud_vpn.components import AwsSite, AzureSite, Ikev2GatewayPair, Ikev2TunnelSet

REPO = Path(__file__).resolve().parent.parent
PROVIDER = REPO / "provider"
NAME = "cross-cloud-vpn"

# --- what each component must offer, whatever else it grows --------------------------------

CORE: dict[str, dict[str, set[str]]] = {
    "AwsSite": {
        "required": {"remoteCidrs", "adminCidrs", "sshPublicKey", "amiId"},
        "outputs": {"publicIp", "gatewayPrivateIp", "localCidrs", "remoteCidrs", "instanceId", "vpcId",
                    "securityGroupId"},
    },
    "AzureSite": {
        "required": {"location", "resourceGroupName", "remoteCidrs", "adminCidrs", "sshPublicKey", "imageId"},
        "outputs": {"publicIp", "gatewayPrivateIp", "localCidrs", "remoteCidrs", "vmId", "resourceGroupName"},
    },
    "Ikev2GatewayPair": {
        "required": {"left", "right", "sshPrivateKey", "adminCidrs"},
        "optional": {"authMode", "psk", "ikeProposal", "childProposals", "dpdInterval"},
        "outputs": {"leftIkedConf", "rightIkedConf", "leftPfConf", "rightPfConf", "leftIkedPublicKey",
                    "rightIkedPublicKey", "tunnelStatus"},
    },
    "Ikev2TunnelSet": {
        "required": {"left", "right", "sshPrivateKey", "adminCidrs"},
        "optional": {"authMode", "psk", "ikeProposal", "childProposals", "dpdInterval", "requireTunnelUp"},
        "outputs": {"tunnelStatus", "leftIkedConfs", "rightIkedConfs"},
    },
}

REAL = [AwsSite, AzureSite, Ikev2GatewayPair, Ikev2TunnelSet]


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def public_annotations(cls: type) -> dict[str, Any]:
    ann: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        if base in (object, pulumi.Resource, pulumi.ComponentResource):
            continue
        ann.update(inspect.get_annotations(base))
    return {k: v for k, v in ann.items() if not k.startswith("_")}


def args_class(component: type) -> type:
    ann = inspect.get_annotations(component.__init__, eval_str=True)  # type: ignore[misc]
    return ann["args"]  # type: ignore[no-any-return]


def defaulted_in_python(args: type) -> set[str]:
    """Fields a Python caller may leave out: dataclass defaults or TypedDict NotRequired keys."""
    if dataclasses.is_dataclass(args):
        return {f.name for f in dataclasses.fields(args)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    if hasattr(args, "__optional_keys__"):
        return set(args.__optional_keys__)
    return {k for k in public_annotations(args) if hasattr(args, k)}


def assert_component_schema(component: type[pulumi.ComponentResource], core: Mapping[str, set[str]]) -> None:
    """The analyzer's view of one component: every input and output, with sane types."""
    result = Analyzer(NAME).analyze([component])
    definition = result["component_definitions"][component.__name__]
    inputs, outputs = definition.inputs, definition.outputs
    args = args_class(component)

    # every annotated field of the args class is an input, and nothing else is
    assert set(inputs) == {camel(k) for k in public_annotations(args)}
    required = {k for k, p in inputs.items() if not p.optional}
    assert core["required"] <= required, f"must be required: {core['required'] - required}"
    assert core.get("optional", set()) <= set(inputs) - required
    # nothing a Python caller may leave out is demanded from a TypeScript/YAML caller
    demanded = required & {camel(k) for k in defaulted_in_python(args)}
    assert not demanded, f"defaulted in Python but required in the schema: {sorted(demanded)}"

    # every public annotation of the component class is an output
    assert set(outputs) == {camel(k) for k in public_annotations(component)}
    assert core["outputs"] <= set(outputs)
    for name in ("publicIp", "gatewayPrivateIp", "tunnelStatus", "leftIkedConf", "rightIkedConf",
                 "leftPfConf", "rightPfConf", "leftIkedPublicKey", "rightIkedPublicKey"):
        if name in outputs:
            assert outputs[name].type == PropertyType.STRING and not outputs[name].optional, name
    for name in ("localCidrs", "remoteCidrs"):
        if name in outputs:
            items = outputs[name].items
            assert outputs[name].type == PropertyType.ARRAY and items is not None, name
            assert items.type == PropertyType.STRING, name

    if "authMode" in inputs:
        ref = inputs["authMode"].ref or ""
        enum_type = result["type_definitions"][ref.rsplit(":", 1)[-1]]
        assert {e.value for e in enum_type.enum or []} == {"pubkey", "psk"}
    assert definition.description, f"{component.__name__} needs a docstring (the schema description)"


# --- the plugin layout ------------------------------------------------------------------------

def test_plugin_lives_in_its_own_folder() -> None:
    # The python language host runs <plugin folder>/__main__.py; the root one is the program.
    assert (REPO / "Pulumi.yaml").is_file() and (REPO / "__main__.py").is_file()
    assert not (REPO / "PulumiPlugin.yaml").exists()
    import yaml

    manifest = yaml.safe_load((PROVIDER / "PulumiPlugin.yaml").read_text())
    assert manifest == {"runtime": "python"}
    assert (PROVIDER / "__main__.py").is_file()


def test_plugin_requirements_are_the_package_dependencies() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    lines = [line.strip() for line in (PROVIDER / "requirements.txt").read_text().splitlines()]
    assert [line for line in lines if line and not line.startswith("#")] == \
        pyproject["project"]["dependencies"]


def test_plugin_hosts_every_exported_component() -> None:
    entry = runpy.run_path(str(PROVIDER / "__main__.py"), run_name="provider_under_test")
    exported = {v for v in vars(components_module).values()
                if inspect.isclass(v) and issubclass(v, pulumi.ComponentResource)}
    assert entry["NAME"] == NAME
    assert set(entry["COMPONENTS"]) == exported >= {AwsSite, AzureSite, Ikev2GatewayPair}
    assert entry["version"]() == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_plugin_maps_the_checkouts_subpackages_without_an_installed_package(tmp_path: Path) -> None:
    """The plugin's virtualenv has the dependencies only: no editable install, no import hook."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import json, runpy, sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')]\n"
        f"entry = runpy.run_path({str(PROVIDER / '__main__.py')!r}, run_name='provider_under_test')\n"
        "import cross_cloud_vpn.openbsd, cross_cloud_vpn.lab\n"
        "print(json.dumps({'components': [c.__name__ for c in entry['COMPONENTS']],\n"
        "                  'files': [sys.modules[m].__file__ for m in ('cross_cloud_vpn.components',\n"
        "                            'cross_cloud_vpn.openbsd', 'cross_cloud_vpn.lab')]}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(probe)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"AwsSite", "AzureSite", "Ikev2GatewayPair"} <= set(seen["components"]), seen
    assert seen["files"] == [str(REPO / sub / "__init__.py") for sub in ("components", "openbsd", "lab")]


# --- the real components ----------------------------------------------------------------------

@pytest.mark.parametrize("component", REAL)
def test_analyzer_infers_every_input_and_output(component: type[pulumi.ComponentResource]) -> None:
    assert_component_schema(component, CORE[component.__name__])


def test_the_plugin_serves_the_schema_over_grpc() -> None:
    """`python provider <engine>`, as the language host starts it; then GetSchema over gRPC."""
    import grpc  # type: ignore[import-untyped]
    from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen([sys.executable, str(PROVIDER), "127.0.0.1:1"], cwd=PROVIDER.parent.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        ready, _, _ = select.select([proc.stdout], [], [], 90)
        port = proc.stdout.readline().strip() if ready else ""
        if not port.isdigit():
            proc.kill()
            raise AssertionError(f"the plugin printed no port: {proc.stderr.read()[-1500:]}")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = provider_pb2_grpc.ResourceProviderStub(channel).GetSchema(
                provider_pb2.GetSchemaRequest(version=0), timeout=30)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    schema = json.loads(reply.schema)
    assert schema["name"] == NAME
    resources = schema["resources"]
    assert set(resources) == {f"{NAME}:index:{c.__name__}" for c in runpy.run_path(
        str(PROVIDER / "__main__.py"), run_name="provider_under_test")["COMPONENTS"]}
    for component, core in CORE.items():
        resource = resources[f"{NAME}:index:{component}"]
        assert resource["isComponent"] is True
        assert core["required"] <= set(resource.get("requiredInputs", []))
        assert core["outputs"] <= set(resource["properties"])


# --- the control: components in the shape the analyzer wants ---------------------------------

class TargetAuthMode(enum.StrEnum):
    """How the gateways authenticate the IKE SA."""

    PUBKEY = "pubkey"
    PSK = "psk"


class TargetRole(enum.StrEnum):
    ACTIVE = "active"
    PASSIVE = "passive"


class TargetTestVmArgs(TypedDict):
    ami_id: pulumi.Input[str]
    private_ip: str
    instance_type: NotRequired[str]


class TargetSiteArgs(TypedDict):
    """Args as a TypedDict: the provider hands the component a dict, never a dataclass."""

    remote_cidrs: Sequence[str]
    """The peer's networks."""
    admin_cidrs: Sequence[str]
    ssh_public_key: str
    ami_id: pulumi.Input[str]
    instance_type: NotRequired[str]
    tags: NotRequired[Mapping[str, str]]
    test_vm: NotRequired[TargetTestVmArgs]


class TargetSite(pulumi.ComponentResource):
    """A site: its outputs are class annotations; the gateway resource is not one of them."""

    site: str
    public_ip: pulumi.Output[str]
    """The gateway's public IP."""
    gateway_private_ip: pulumi.Output[str]
    local_cidrs: pulumi.Output[list[str]]
    remote_cidrs: pulumi.Output[list[str]]
    instance_id: pulumi.Output[str]
    vpc_id: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    gateway_ready: pulumi.Output[str]
    test_vm_private_ip: pulumi.Output[str | None]

    def __init__(self, name: str, args: TargetSiteArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{NAME}:index:TargetSite", name, None, opts)


class TargetAwsIkeTarget(TypedDict):
    security_group_id: pulumi.Input[str]


class TargetEndpointArgs(TypedDict):
    """One side, as values and outputs of a site (no site object, no method)."""

    site: str
    admin_user: str
    public_ip: pulumi.Input[str]
    gateway_private_ip: pulumi.Input[str]
    cidrs: pulumi.Input[Sequence[str]]
    gateway_ready: pulumi.Input[str]
    aws: NotRequired[TargetAwsIkeTarget]


class TargetPairArgs(TypedDict):
    left: TargetEndpointArgs
    right: TargetEndpointArgs
    ssh_private_key: pulumi.Input[str]
    admin_cidrs: Sequence[str]
    auth_mode: NotRequired[TargetAuthMode]
    psk: NotRequired[pulumi.Input[str]]
    ike_proposal: NotRequired[str]
    child_proposals: NotRequired[Sequence[str]]
    dpd_interval: NotRequired[int]
    left_role: NotRequired[TargetRole]
    right_role: NotRequired[TargetRole]


class TargetPair(pulumi.ComponentResource):
    """The pair: per-side outputs as plain strings, no maps keyed by site names."""

    left_iked_conf: pulumi.Output[str]
    right_iked_conf: pulumi.Output[str]
    left_pf_conf: pulumi.Output[str]
    right_pf_conf: pulumi.Output[str]
    left_iked_public_key: pulumi.Output[str]
    right_iked_public_key: pulumi.Output[str]
    tunnel_status: pulumi.Output[str]

    def __init__(self, name: str, args: TargetPairArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{NAME}:index:TargetPair", name, None, opts)


@pytest.mark.parametrize("component", REAL, ids=lambda c: c.__name__)
def test_every_input_and_output_of_the_components_is_documented(component: type) -> None:
    # The schema's descriptions come from the docstrings: what a TypeScript user sees in hover.
    # The SDK's analyzer with a retry around CPython 3.11's spurious SystemError in ast.parse
    # (cross_cloud_vpn.component_reference.SteadyAnalyzer): a missing docstring still fails.
    definition = SteadyAnalyzer(NAME).analyze([component])["component_definitions"][component.__name__]
    described = {**definition.inputs, **definition.outputs}
    undocumented = sorted(k for k, p in described.items() if not p.description)
    assert not undocumented, f"{component.__name__}: no docstring for {undocumented}"


def test_target_shapes_pass_the_same_assertions() -> None:
    assert_component_schema(TargetSite, {**CORE["AwsSite"], "required": CORE["AwsSite"]["required"]})
    assert_component_schema(TargetPair, CORE["Ikev2GatewayPair"])
    both = Analyzer(NAME).analyze([TargetSite, TargetPair])
    assert set(both["component_definitions"]) == {"TargetSite", "TargetPair"}
    assert {"TargetTestVmArgs", "TargetEndpointArgs", "TargetAuthMode", "TargetRole"} <= \
        set(both["type_definitions"])


class _Resource(TypedDict):
    gateway: pulumi.Resource


class _Literal(TypedDict):
    auth_mode: Literal["pubkey", "psk"]


def _component_for(args_type: type) -> type[pulumi.ComponentResource]:
    def init(self: pulumi.ComponentResource, name: str, args: Any, opts: Any = None) -> None: ...

    init.__annotations__ = {"args": args_type}
    return type(f"C{args_type.__name__}", (pulumi.ComponentResource,), {"__init__": init})


@pytest.mark.parametrize(
    ("args_type", "error"),
    [
        (_Resource, "Can not determine resource reference for type 'Resource' used in '_Resource.gateway'"),
        (_Literal, "issubclass() arg 1 must be a class"),
    ],
    ids=["resource-field", "literal"],
)
def test_shapes_the_analyzer_rejects(args_type: type, error: str) -> None:
    with pytest.raises(Exception) as raised:
        Analyzer(NAME).analyze([_component_for(args_type)])
    assert error in str(raised.value)


def test_string_annotations_are_rejected() -> None:
    def init(self: pulumi.ComponentResource, name: str, args: Any, opts: Any = None) -> None: ...

    init.__annotations__ = {"args": "TargetSiteArgs"}  # what `from __future__ import annotations` leaves
    component = type("Stringly", (pulumi.ComponentResource,), {"__init__": init})
    with pytest.raises(AttributeError, match="'str' object has no attribute '__mro__'"):
        Analyzer(NAME).analyze([component])


class _EnumMap(TypedDict):
    count: int
    roles: Mapping[str, TargetRole]


def test_what_construct_hands_the_component() -> None:
    """Why TypedDict + int() + one enum field per side: the SDK's input mapping, as installed."""
    provider = ComponentProvider([TargetSite, _component_for(_EnumMap)], NAME, version="0.0.1")
    site_args = provider.map_inputs(
        {"remoteCidrs": ["10.20.1.0/24"], "adminCidrs": [], "sshPublicKey": "k", "amiId": "ami-1",
         "testVm": {"amiId": "ami-2", "privateIp": "10.10.1.20"}},
        provider._component_defs["TargetSite"],
    )
    # plain dicts with the Python names, not TargetSiteArgs objects (nor dataclasses)
    assert type(site_args) is dict and type(site_args["test_vm"]) is dict
    assert site_args["test_vm"] == {"ami_id": "ami-2", "private_ip": "10.10.1.20"}
    assert "instance_type" not in site_args  # an absent optional input is absent: apply defaults
    odd = provider.map_inputs({"count": 10.0, "roles": {"aws": "passive"}},
                              provider._component_defs["C_EnumMap"])
    assert odd["count"] == 10.0 and isinstance(odd["count"], float)  # integers stay floats: use int()
    assert odd["roles"] == {"aws": {}}  # a map of enums loses its values: use left_role/right_role
