"""The lab cloud: the real Pulumi program evaluated in-process against the SDK's mock monitor.

It stands in for AWS, Azure and the SSH hosts at once. Public IPs come from documentation
ranges (198.51.100.0/24 for AWS, 203.0.113.0/24 for Azure); private IPs are the ones the
program asks for inside its subnets; a gateway's ``/etc/iked/local.pub`` is whatever key the
caller hands in (the rehearsal makes real ones). Every registration is recorded with its
parent, its dependencies and which inputs were secret, so tests can assert on the exact
inputs a real ``pulumi up`` would send, and the rehearsal can take the files the
``configure`` commands would push from their ``stdin``.

In ``preview`` mode the lab cloud returns no computed values at all (ids, IPs, command
output stay unknown), the way a first ``pulumi preview`` runs the program.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.config import set_all_config
from pulumi.runtime.settings import SETTINGS
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

PROJECT = "cross-cloud-vpn"
AWS_PUBLIC_RANGE = ipaddress.IPv4Network("198.51.100.0/24")
AZURE_PUBLIC_RANGE = ipaddress.IPv4Network("203.0.113.0/24")
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
#: What a check command "prints" here: nothing was checked, and it says so.
LAB_CHECK_OUTPUT = "tunnel: not checked (lab cloud, no real host)\n"


#: What data lookups answer: an OpenBSD AMI, and the existing networks of a BYO stack
#: (two address blocks each, as real networks often have).
DEFAULT_LOOKUPS: dict[str, dict[str, Any]] = {
    "aws:ec2/getAmi:getAmi": {"id": "ami-0123456789abcdef0", "name": "lab-image", "architecture": "x86_64"},
    "aws:ec2/getVpc:getVpc": {
        "id": "vpc-0123456789abcdef0", "cidrBlock": "10.30.0.0/16",
        "cidrBlockAssociations": [
            {"cidrBlock": "10.30.0.0/16", "associationId": "a1", "state": "associated"},
            {"cidrBlock": "10.31.0.0/16", "associationId": "a2", "state": "associated"},
        ],
    },
    "azure-native:network:getVirtualNetwork": {
        "name": "existing-vnet", "addressSpace": {"addressPrefixes": ["10.40.0.0/16", "10.41.0.0/16"]},
    },
    # AzureImage: the caller's subscription (names its storage account) and the upload's SAS.
    "azure-native:authorization:getClientConfig": {
        "subscriptionId": "00000000-0000-0000-0000-000000000000", "tenantId": "lab-tenant",
        "clientId": "lab-client", "objectId": "lab-object",
    },
    "azure-native:storage:listStorageAccountServiceSAS": {"serviceSasToken": "sv=lab&sr=b&sp=cw&sig=lab"},
}


#: The input that names an azure-native resource of each kind the program makes.
_AZURE_NAME_KEYS = {
    "ResourceGroup": "resourceGroupName", "VirtualNetwork": "virtualNetworkName", "Subnet": "subnetName",
    "NetworkSecurityGroup": "networkSecurityGroupName", "SecurityRule": "securityRuleName",
    "RouteTable": "routeTableName", "Route": "routeName", "PublicIPAddress": "publicIpAddressName",
    "NetworkInterface": "networkInterfaceName", "VirtualMachine": "vmName", "StorageAccount": "accountName",
    "BlobContainer": "containerName", "Image": "imageName",
}


@dataclass
class Registration:
    """One resource as the program registered it."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    secret_inputs: set[str]
    inputs: dict[str, Any] = field(repr=False)
    state: dict[str, Any] = field(default_factory=dict, repr=False)


def _holds_secret(value: Any) -> bool:
    """Whether a serialized protobuf value carries Pulumi's secret signature anywhere."""
    from google.protobuf import json_format  # type: ignore[import-untyped]

    text = json_format.MessageToJson(value) if hasattr(value, "DESCRIPTOR") else str(value)
    return _SECRET_SIG in text


def _unwrap_secrets(value: Any) -> Any:
    """Plain values out of deserialized inputs (secret-ness is kept in ``secret_inputs``)."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return _unwrap_secrets(value.get("value"))
        return {k: _unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap_secrets(v) for v in value]
    return value


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: LabCloud) -> None:
        super().__init__(mocks)
        self.lab = mocks

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            fields = request.object.fields
            self.lab.registrations.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    custom=bool(request.custom),
                    dependencies=list(request.dependencies),
                    property_dependencies={
                        k: list(v.urns) for k, v in request.propertyDependencies.items()
                    },
                    secret_inputs={k for k in fields if _holds_secret(fields[k])},
                    inputs=_unwrap_secrets(rpc.deserialize_properties(request.object)),
                    state=dict(self.resources[response.urn].state) if response.urn in self.resources else {},
                )
            )
        return response


class LabCloud(pulumi.runtime.Mocks):
    """Mock AWS, Azure and SSH hosts that answer like the real ones would."""

    def __init__(self, public_keys: Mapping[str, str] | None = None, preview: bool = False,
                 lookups: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.preview = preview
        self.lookups = {**DEFAULT_LOOKUPS, **(lookups or {})}
        self.public_keys = dict(public_keys or {})
        self.registrations: list[Registration] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._aws_ips = (str(AWS_PUBLIC_RANGE[i]) for i in itertools.count(10))
        self._azure_ips = (str(AZURE_PUBLIC_RANGE[i]) for i in itertools.count(20))
        self._ids = itertools.count(1)
        self._dynamic = 0

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        if self.preview:
            return "", inputs
        n = next(self._ids)
        state = dict(inputs)
        state.update(self._computed(args.typ, args.name, inputs, n))
        rid = state.pop("__id", f"{args.name}-{n:04d}")
        return rid, state

    def _computed(self, typ: str, name: str, inputs: dict[str, Any], n: int) -> dict[str, Any]:
        if typ == "aws:ec2/eip:Eip":
            return {"publicIp": next(self._aws_ips), "allocationId": f"eipalloc-{n:08x}"}
        if typ == "aws:ec2/instance:Instance":
            vpc = self.lookups["aws:ec2/getVpc:getVpc"]["cidrBlock"]
            return {"__id": f"i-{n:017x}", "primaryNetworkInterfaceId": f"eni-{n:017x}",
                    "privateIp": inputs.get("privateIp") or self._dynamic_ip(vpc)}
        if typ == "aws:ec2/keyPair:KeyPair":
            return {"keyName": inputs.get("keyName", name)}
        if typ == "aws:s3/bucket:Bucket":
            bucket = inputs.get("bucket") or f"{name}-{n:08x}"
            return {"__id": bucket, "bucket": bucket, "arn": f"arn:aws:s3:::{bucket}"}
        if typ == "aws:iam/role:Role":
            role = inputs.get("name") or f"{name}-{n:08x}"
            return {"__id": role, "name": role, "arn": f"arn:aws:iam::123456789012:role/{role}"}
        if typ == "aws:ebs/snapshotImport:SnapshotImport":
            return {"__id": f"snap-{n:017x}", "volumeSize": 8, "arn": f"arn:aws:lab::{n}"}
        if typ.startswith("aws:ec2/"):
            return {"__id": f"{typ.split('/')[-1].split(':')[0].lower()}-{n:08x}", "arn": f"arn:aws:lab::{n}"}
        if typ.startswith("azure-native:"):
            return self._azure(typ, name, inputs)
        if typ == "command:remote:Command":
            return {"stdout": self._stdout(name, inputs), "stderr": ""}
        return {}

    def _azure(self, typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        kind = typ.rsplit(":", 1)[-1]
        # Azure names a resource by its own name property (else Pulumi's auto-name, here the logical one).
        resource_name = inputs.get(_AZURE_NAME_KEYS.get(kind, "")) or name
        state: dict[str, Any] = {
            "name": resource_name,
            "__id": f"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/"
                    f"{inputs.get('resourceGroupName', resource_name)}/providers/lab/{kind}/{resource_name}",
        }
        if kind == "PublicIPAddress":
            state["ipAddress"] = next(self._azure_ips)
        if kind == "StorageAccount":
            state["primaryEndpoints"] = {"blob": f"https://{resource_name}.blob.core.windows.net/"}
        if kind == "NetworkInterface":
            space = self.lookups["azure-native:network:getVirtualNetwork"]["addressSpace"]["addressPrefixes"]
            state["ipConfigurations"] = [
                {**cfg, "privateIPAddress": cfg.get("privateIPAddress") or self._dynamic_ip(space[0])}
                for cfg in inputs.get("ipConfigurations", [])
            ]
        return state

    def _dynamic_ip(self, network: str) -> str:
        """An address the cloud would pick itself: here, the next one from a BYO network's first block."""
        self._dynamic += 1
        return str(ipaddress.IPv4Network(network)[3 + self._dynamic])

    def _stdout(self, name: str, inputs: dict[str, Any]) -> str:
        if name.endswith("-pubkey"):
            site = name.removesuffix("-pubkey").rsplit("-", 1)[-1]
            if site not in self.public_keys:
                raise KeyError(f"lab cloud has no iked public key for site {site!r}")
            return self.public_keys[site]
        if name.endswith("-check"):
            return LAB_CHECK_OUTPUT
        if name.endswith("-wait-ssh"):
            return "OpenBSD 7.6\n"
        return ""

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.calls.append((args.token, dict(args.args)))
        if args.token in self.lookups:
            return dict(self.lookups[args.token]), []
        return {}, []


@dataclass
class Evaluation:
    """A whole program run: what it registered and what it exported."""

    cloud: LabCloud
    outputs: dict[str, Any]
    secret_outputs: set[str]
    unknown_outputs: set[str]

    @property
    def resources(self) -> list[Registration]:
        return self.cloud.registrations

    def by_type(self, typ: str) -> list[Registration]:
        return [r for r in self.resources if r.type == typ]

    def named(self, suffix: str) -> Registration:
        found = [r for r in self.resources if r.name.endswith(suffix)]
        if len(found) != 1:
            raise LookupError(f"{len(found)} resources named *{suffix}: {[r.name for r in found]}")
        return found[0]


def evaluate(
    program: Callable[[], Mapping[str, Any]],
    config: Mapping[str, str],
    secret_keys: Collection[str],
    *,
    stack: str = "dev",
    preview: bool = False,
    public_keys: Mapping[str, str] | None = None,
    lookups: Mapping[str, dict[str, Any]] | None = None,
) -> Evaluation:
    """Run ``program`` (which registers resources and returns its outputs) in the lab cloud."""
    cloud = LabCloud(public_keys=public_keys, preview=preview, lookups=lookups)
    pulumi.runtime.set_mocks(cloud, project=PROJECT, stack=stack, preview=preview,
                             monitor=_RecordingMonitor(cloud))
    set_all_config(dict(config), list(secret_keys))
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()
    collected: dict[str, tuple[Any, bool, bool]] = {}

    async def collect(outputs: Mapping[str, Any]) -> None:
        for key, value in outputs.items():
            out = pulumi.Output.from_input(value)
            resolved = await out.future(with_unknowns=True)
            unknown = not await out.is_known()
            collected[key] = (None if unknown else resolved, await out.is_secret(), unknown)

    def body() -> None:
        _sync_await(collect(program()))

    _sync_await(run_pulumi_func(body))
    return Evaluation(
        cloud=cloud,
        outputs={k: v[0] for k, v in collected.items()},
        secret_outputs={k for k, v in collected.items() if v[1]},
        unknown_outputs={k for k, v in collected.items() if v[2]},
    )
