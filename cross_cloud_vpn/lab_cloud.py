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

Given the evaluation of a previous ``up`` (``previous=``), the lab cloud also plays the part of
the engine on a second ``up``: it applies each resource's ``ignore_changes`` against the stored
inputs, decides from the provider's force-new properties, ``replace_on_changes`` and a command's
``triggers`` whether the resource stays, is updated or is replaced, and answers the stored state
for a resource that stays. Each :class:`Registration` then says what the engine would do
(``action``). ``replace=`` forces replacements, the way ``pulumi up --replace`` or a machine the
cloud lost does.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import threading
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
    # HA mode: the region's zones (two gateways, two zones), and the region and account that
    # name the route tables in the gateways' instance role policy.
    "aws:index/getAvailabilityZones:getAvailabilityZones": {
        "id": "eu-west-1", "names": ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
        "zoneIds": ["euw1-az1", "euw1-az2", "euw1-az3"],
    },
    "aws:index/getRegion:getRegion": {"id": "eu-west-1", "name": "eu-west-1", "region": "eu-west-1"},
    "aws:index/getCallerIdentity:getCallerIdentity": {
        "id": "123456789012", "accountId": "123456789012", "arn": "arn:aws:iam::123456789012:user/lab",
        "userId": "AIDALAB",
    },
}


#: The input that names an azure-native resource of each kind the program makes.
_AZURE_NAME_KEYS = {
    "ResourceGroup": "resourceGroupName", "VirtualNetwork": "virtualNetworkName", "Subnet": "subnetName",
    "NetworkSecurityGroup": "networkSecurityGroupName", "SecurityRule": "securityRuleName",
    "RouteTable": "routeTableName", "Route": "routeName", "PublicIPAddress": "publicIpAddressName",
    "NetworkInterface": "networkInterfaceName", "VirtualMachine": "vmName", "StorageAccount": "accountName",
    "BlobContainer": "containerName", "Image": "imageName", "LoadBalancer": "loadBalancerName",
}


#: Inputs whose change makes the provider replace the resource instead of updating it (the
#: "ForceNew" properties of terraform-provider-aws's schema that pulumi-aws bridges, for the
#: types and properties this program sets), by resource type. A command's ``triggers`` replace it
#: (pulumi-command: "the resource will be replaced if any of these values change"); any other
#: changed input of a command updates it, which runs its ``update`` or else its ``create`` again.
FORCE_NEW: dict[str, frozenset[str]] = {
    "aws:ec2/instance:Instance": frozenset(
        {"ami", "availabilityZone", "privateIp", "subnetId", "keyName"}
    ),
    "aws:ec2/eipAssociation:EipAssociation": frozenset(
        {"allocationId", "instanceId", "networkInterfaceId", "privateIpAddress"}
    ),
    "aws:ec2/keyPair:KeyPair": frozenset({"publicKey", "keyName"}),
    "aws:ec2/securityGroup:SecurityGroup": frozenset({"name", "description", "vpcId"}),
    "aws:ec2/subnet:Subnet": frozenset({"cidrBlock", "vpcId", "availabilityZone"}),
    "aws:ec2/vpc:Vpc": frozenset({"cidrBlock"}),
    "aws:ec2/route:Route": frozenset({"routeTableId", "destinationCidrBlock"}),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": frozenset({"securityGroupId"}),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": frozenset({"securityGroupId"}),
    # HA: the route server's resources (terraform-provider-aws internal/service/ec2/
    # vpc_route_server*.go, RequiresReplace plan modifiers) and the gateways' instance role
    # (internal/service/iam/role.go, role_policy.go, instance_profile.go, ForceNew).
    "aws:vpc/routeServer:RouteServer": frozenset({"amazonSideAsn"}),
    "aws:vpc/routeServerVpcAssociation:RouteServerVpcAssociation": frozenset({"routeServerId", "vpcId"}),
    "aws:vpc/routeServerEndpoint:RouteServerEndpoint": frozenset({"routeServerId", "subnetId"}),
    "aws:vpc/routeServerPeer:RouteServerPeer": frozenset(
        {"peerAddress", "routeServerEndpointId", "bgpOptions"}
    ),
    "aws:vpc/routeServerPropagation:RouteServerPropagation": frozenset({"routeServerId", "routeTableId"}),
    "aws:iam/role:Role": frozenset({"name", "namePrefix", "path"}),
    "aws:iam/rolePolicy:RolePolicy": frozenset({"name", "namePrefix", "role"}),
    "aws:iam/instanceProfile:InstanceProfile": frozenset({"name", "namePrefix", "path"}),
    "command:remote:Command": frozenset({"triggers"}),
    "command:local:Command": frozenset({"triggers"}),
}
#: azure-native replaces a resource whose name, group or location changes.
_AZURE_FORCE_NEW = frozenset({"resourceGroupName", "location", *_AZURE_NAME_KEYS.values(),
                              "networkSecurityGroupName", "virtualNetworkName", "routeTableName"})


def _generation(resource_id: str) -> int:
    """How often the lab cloud replaced a resource: the ``~N`` it appends to a new one's id."""
    _, _, n = resource_id.rpartition("~")
    return int(n) if n.isdigit() else 0


def _at(value: Any, path: str) -> Any:
    """The value at a dotted input path (``storageProfile.imageReference.id``), or None."""
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _with_ignored(
    inputs: dict[str, Any], stored: Mapping[str, Any], paths: Collection[str]
) -> dict[str, Any]:
    """``inputs`` with every ``ignore_changes`` path taken from the stored inputs, as the engine does."""
    result = dict(inputs)
    for path in paths:
        head, _, rest = path.partition(".")
        if not rest:
            if head in stored:
                result[head] = stored[head]
            else:
                result.pop(head, None)
        elif isinstance(result.get(head), dict) and isinstance(stored.get(head), dict):
            result[head] = _with_ignored(result[head], stored[head], [rest])
    return result


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
    ignore_changes: list[str] = field(default_factory=list)
    replace_on_changes: list[str] = field(default_factory=list)
    delete_before_replace: bool = False
    id: str = ""
    action: str = "create"
    """What the engine would do with it: ``create``, ``same``, ``update`` or ``replace``."""
    changed: list[str] = field(default_factory=list)
    """The inputs that differ from the previous ``up`` (after ``ignore_changes``)."""
    stored_inputs: dict[str, Any] = field(default_factory=dict, repr=False)
    """The inputs the engine stores: the program's, with ignored ones kept from before."""
    provider: str = ""
    """The provider reference (``<provider urn>::<id>``) it was registered with, if any."""

    @property
    def key(self) -> tuple[str, str]:
        return self.type, self.name


def _holds_secret(value: Any) -> bool:
    """Whether a serialized protobuf value carries Pulumi's secret signature anywhere."""
    from google.protobuf import json_format  # type: ignore[import-untyped]

    text = json_format.MessageToJson(value) if hasattr(value, "DESCRIPTOR") else str(value)
    return _SECRET_SIG in text


def _comparable(value: Any) -> Any:
    """Inputs as the engine compares them: an asset by what it holds, not by object identity."""
    if isinstance(value, pulumi.asset.Asset | pulumi.asset.Archive):
        return {"asset": type(value).__name__, **vars(value)}
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


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
        # The mocks see only the inputs; the engine's view (options) travels on this thread.
        self.lab.local.request = request
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            fields = request.object.fields
            decision = self.lab.decisions.pop((request.type, request.name), None)
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
                    ignore_changes=list(request.ignoreChanges),
                    replace_on_changes=list(request.replaceOnChanges),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    id=response.id,
                    action=decision[0] if decision else "create",
                    changed=decision[1] if decision else [],
                    stored_inputs=decision[2] if decision else {},
                    provider=request.provider,
                )
            )
        return response


class LabCloud(pulumi.runtime.Mocks):
    """Mock AWS, Azure and SSH hosts that answer like the real ones would."""

    def __init__(self, public_keys: Mapping[str, str] | None = None, preview: bool = False,
                 lookups: Mapping[str, dict[str, Any]] | None = None,
                 previous: Evaluation | None = None, replace: Collection[tuple[str, str]] = ()) -> None:
        self.preview = preview
        self.previous = {r.key: r for r in previous.resources} if previous else {}
        self.replace = set(replace)
        self.local = threading.local()
        self.decisions: dict[tuple[str, str], tuple[str, list[str], dict[str, Any]]] = {}
        self.lookups = {**DEFAULT_LOOKUPS, **(lookups or {})}
        # Kept as given (not copied): a caller may hand a mapping that makes a site's key when asked.
        self.public_keys: Mapping[str, str] = public_keys if public_keys is not None else {}
        self.registrations: list[Registration] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._aws_ips = (str(AWS_PUBLIC_RANGE[i]) for i in itertools.count(10))
        self._azure_ips = (str(AZURE_PUBLIC_RANGE[i]) for i in itertools.count(20))
        self._dynamic = 0

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        if self.preview:
            return "", inputs
        key = (args.typ, args.name)
        old = self.previous.get(key)
        compared = _comparable(_unwrap_secrets(inputs))
        if old is None:
            self.decisions[key] = ("create", [], compared)
            return self._fresh(args.typ, args.name, inputs, generation=0)
        request = getattr(self.local, "request", None)
        ignored = list(request.ignoreChanges) if request is not None else []
        before = old.stored_inputs
        stored = _with_ignored(compared, before, ignored)
        changed = sorted(k for k in {*stored, *before} if stored.get(k) != before.get(k))
        force_new = FORCE_NEW.get(args.typ, _AZURE_FORCE_NEW if args.typ.startswith("azure-native:") else ())
        on_changes = list(request.replaceOnChanges) if request is not None else []
        replaced = key in self.replace or any(k in force_new for k in changed) or any(
            _at(stored, path) != _at(before, path) for path in on_changes
        )
        # What the provider receives: the program's inputs (secrets still marked), ignored ones old.
        sent = _with_ignored(inputs, old.state, ignored)
        if replaced:
            self.decisions[key] = ("replace", changed, stored)
            return self._fresh(args.typ, args.name, sent, generation=_generation(old.id) + 1)
        if changed:
            self.decisions[key] = ("update", changed, stored)
            state = {**old.state, **sent, **self._computed(args.typ, args.name, sent, 0)}
            state.pop("__id", None)
            return old.id, state
        self.decisions[key] = ("same", [], stored)
        return old.id, dict(old.state)

    def _fresh(
        self, typ: str, name: str, inputs: dict[str, Any], generation: int
    ) -> tuple[str, dict[str, Any]]:
        """A new resource's id and state; the id is the same for the same name and generation."""
        n = int(hashlib.sha256(f"{typ}/{name}/{generation}".encode()).hexdigest()[:8], 16)
        state = dict(inputs)
        state.update(self._computed(typ, name, inputs, n))
        rid = state.pop("__id", f"{name}-{n:08x}")
        return f"{rid}~{generation}" if generation else rid, state

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
        if typ == "aws:ec2/subnet:Subnet":
            # A subnet made without a zone gets one AWS picks: here the region's first.
            zones = self.lookups["aws:index/getAvailabilityZones:getAvailabilityZones"]["names"]
            return {"__id": f"subnet-{n:017x}", "arn": f"arn:aws:lab::{n}",
                    "availabilityZone": inputs.get("availabilityZone") or zones[0]}
        if typ == "aws:ec2/routeTable:RouteTable":
            # EC2's own form (rtb- and 17 hex digits): the gateways' steering script is handed it.
            return {"__id": f"rtb-{n:017x}", "arn": f"arn:aws:lab::{n}"}
        if typ == "aws:vpc/routeServerEndpoint:RouteServerEndpoint":
            # AWS picks the endpoint's address in its subnet; here the subnet's last usable one
            # (AWS keeps the first four and the last: "Subnet CIDR reservations", VPC user guide).
            subnet = next((r for r in self.registrations if r.id == inputs.get("subnetId")), None)
            cidr = (subnet.inputs.get("cidrBlock") if subnet else None) or "10.10.0.0/24"
            return {"__id": f"rse-{n:017x}", "routeServerEndpointId": f"rse-{n:017x}",
                    "eniAddress": str(ipaddress.IPv4Network(cidr)[-2]), "eniId": f"eni-{n:017x}"}
        if typ == "aws:vpc/routeServer:RouteServer":
            return {"__id": f"rs-{n:017x}", "routeServerId": f"rs-{n:017x}", "arn": f"arn:aws:lab::{n}"}
        if typ == "aws:ebs/snapshotImport:SnapshotImport":
            return {"__id": f"snap-{n:017x}", "volumeSize": 8, "arn": f"arn:aws:lab::{n}"}
        if typ.startswith("aws:ec2/"):
            return {"__id": f"{typ.split('/')[-1].split(':')[0].lower()}-{n:08x}", "arn": f"arn:aws:lab::{n}"}
        if typ.startswith("azure-native:"):
            return self._azure(typ, name, inputs)
        if typ == "command:remote:Command":
            return {"stdout": self._stdout(name, inputs), "stderr": ""}
        if typ == "command:local:Command":
            # An image choice pinned by the program prints the id it was handed.
            return {"stdout": (inputs.get("environment") or {}).get("IMAGE_ID", ""), "stderr": ""}
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

    def _site_of(self, stem: str) -> str:
        """The site of a pair's ``<pair>-<site>`` command name; both names may hold '-'.

        The pair is the command's parent (its name ends the parent's URN); a command made some
        other way is matched to the longest known site its name ends with."""
        request = getattr(self.local, "request", None)
        pair = request.parent.rpartition("::")[2] if request is not None and request.parent else ""
        if pair and stem.startswith(f"{pair}-"):
            return stem.removeprefix(f"{pair}-")
        known = [site for site in self.public_keys if stem.endswith(f"-{site}")]
        return max(known, key=len) if known else stem.rpartition("-")[2]

    def _stdout(self, name: str, inputs: dict[str, Any]) -> str:
        if name.endswith("-pubkey"):
            site = self._site_of(name.removesuffix("-pubkey"))
            try:
                return self.public_keys[site]
            except KeyError:
                raise KeyError(f"lab cloud has no iked public key for site {site!r}") from None
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

    def changes(self) -> dict[tuple[str, str], str]:
        """What the engine would do on this ``up`` to each resource it does not leave as it is:
        ``create``, ``update``, ``replace``, or ``delete`` (in the previous ``up``, not in this one)."""
        result = {r.key: r.action for r in self.resources if r.action != "same" and r.custom}
        seen = {r.key for r in self.resources}
        result.update({k: "delete" for k, r in self.cloud.previous.items() if k not in seen and r.custom})
        return result

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
    previous: Evaluation | None = None,
    replace: Collection[tuple[str, str]] = (),
    cloud: LabCloud | None = None,
) -> Evaluation:
    """Run ``program`` (which registers resources and returns its outputs) in the lab cloud.

    With ``previous`` (the evaluation of the last ``up``), it is evaluated as the next ``up``:
    each registration's ``action`` says what the engine would do; ``replace`` names resources
    (``(type, name)``) to replace whatever their inputs say. A ``cloud`` made by the caller
    (instead of the options above) keeps its registrations when the program fails.
    """
    cloud = cloud or LabCloud(public_keys=public_keys, preview=preview, lookups=lookups,
                              previous=previous, replace=replace)
    preview = cloud.preview
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
