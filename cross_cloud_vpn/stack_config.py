"""The stack's configuration: read, checked as a whole, and turned into immutable settings.

:func:`parse_settings` is pure: it takes the raw values Pulumi hands a program (every key of
the project's namespace, objects as JSON text) and the set of keys that were stored as
secrets, and returns :class:`StackSettings` or raises :class:`ConfigProblems` listing every
problem at once, each naming the key and the value. :func:`load_settings` wraps it for a
running Pulumi program and turns the problems into one ``pulumi.RunError`` before any
resource is registered.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from cross_cloud_vpn import checks
from cross_cloud_vpn.checks import GATEWAY_HOST_INDEX
from cross_cloud_vpn.disk_image import DiskImageError, ImageInfo, inspect_image
from cross_cloud_vpn.openbsd import (
    DEFAULT_CHILD_PROPOSALS,
    DEFAULT_DPD_INTERVAL,
    DEFAULT_IKE_PROPOSAL,
    proposal_problems,
    psk_problem_text,
)
from cross_cloud_vpn.openbsd.platform import DEFAULT_AWS_INSTANCE_TYPE, instance_type_problem
from cross_cloud_vpn.openbsd.probe import DEFAULT_PROBE_PORT, check_probe_port

PROJECT = "cross-cloud-vpn"
TEST_VM_HOST_INDEX = 20

Role = Literal["active", "passive"]
AuthMode = Literal["pubkey", "psk"]


@dataclass(frozen=True)
class Secret:
    """A secret value that never shows in a repr, a log line or an exception."""

    value: str = field(repr=False)

    def __str__(self) -> str:
        return "[secret]"


@dataclass(frozen=True)
class AwsTestVm:
    instance_type: str
    ami_owner: str
    ami_name_filter: str


@dataclass(frozen=True)
class NetworkSettings:
    """One side's network: created from CIDRs, or an existing one named by its ids (BYO)."""

    cidr: str | None
    gateway_subnet_cidr: str | None
    workload_subnet_cidrs: tuple[str, ...]
    existing_id: str | None
    gateway_subnet_id: str | None
    workload_route_table_ids: tuple[str, ...]
    gateway_private_ip: str | None
    """Fixed gateway address: the key, else host .10 of a created gateway subnet, else None."""
    second_gateway_subnet_cidr: str | None = None
    """HA, AWS: the second gateway's subnet (in the second zone); None in single mode."""

    @property
    def brings_own(self) -> bool:
        return self.existing_id is not None


@dataclass(frozen=True)
class AwsSettings:
    region: str
    network: NetworkSettings
    availability_zone: str | None
    instance_type: str
    image_has_ena: bool
    ami_id: str | None
    ami_owner: str | None
    ami_name_filter: str | None
    admin_user: str
    test_vm: AwsTestVm | None


@dataclass(frozen=True)
class AzureTestVm:
    vm_size: str
    image_publisher: str
    image_offer: str
    image_sku: str
    image_version: str


@dataclass(frozen=True)
class AzureSettings:
    location: str
    resource_group_name: str
    network: NetworkSettings
    vm_size: str
    image_id: str | None
    image_specialized: bool
    admin_user: str
    test_vm: AzureTestVm | None

    @property
    def images_resource_group_name(self) -> str:
        """The resource group that ``imageFile`` imports the Azure image into."""
        return images_resource_group_name(self.resource_group_name)


def images_resource_group_name(resource_group_name: str) -> str:
    """``<resourceGroupName>-images``: where an ``imageFile`` becomes an Azure managed image."""
    return f"{resource_group_name}-images"


@dataclass(frozen=True)
class AccessSettings:
    ssh_public_key: str
    ssh_private_key: Secret
    admin_cidrs: tuple[str, ...]
    allow_ssh_from_anywhere: bool = False


@dataclass(frozen=True)
class TunnelSettings:
    auth_mode: AuthMode
    psk: Secret | None
    ike_proposal: str
    child_proposals: tuple[str, ...]
    dpd_interval: int
    aws_role: Role
    azure_role: Role
    require_up: bool


AwsSteering = Literal["route-tables", "route-server"]
#: Private AS numbers (RFC 6996) of the two clouds' gateways and of the AWS route server.
DEFAULT_AWS_ASN, DEFAULT_AZURE_ASN, DEFAULT_ROUTE_SERVER_ASN = 65010, 65020, 65000
DEFAULT_AZURE_ZONES = ("1", "2")
#: HA, Azure: the second gateway and the internal load balancer's frontend, by host index in the
#: gateway subnet (the first gateway is GATEWAY_HOST_INDEX, .10; Azure keeps .0-.3 and the last).
AZURE_SECOND_GATEWAY_HOST_INDEX, AZURE_LOAD_BALANCER_HOST_INDEX = 11, 12


@dataclass(frozen=True)
class HaSettings:
    """HA mode: two gateways per side in two zones, one tunnel each (``ha.enabled``)."""

    aws_steering: AwsSteering
    aws_asn: int
    azure_asn: int
    route_server_asn: int
    probe_port: int
    aws_second_availability_zone: str | None
    azure_zones: tuple[str, str]
    azure_second_gateway_ip: str
    azure_load_balancer_ip: str


@dataclass(frozen=True)
class StackSettings:
    image_file: ImageInfo | None
    """One OpenBSD disk image imported into both clouds, instead of an image id on each."""
    prefix: str
    aws: AwsSettings
    azure: AzureSettings
    access: AccessSettings
    tunnel: TunnelSettings
    tags: Mapping[str, str]
    ha: HaSettings | None = None
    """None: one gateway per side (the default)."""


class ConfigProblems(ValueError):
    """Every problem found in a stack's config, reported together."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in the stack config "
            f"(nothing was created):\n{listed}"
        )


def host_address(cidr: str, index: int) -> str:
    """The ``index``-th address of ``cidr`` (0 is the network address)."""
    return str(ipaddress.IPv4Network(cidr)[index])


# --- the schema: every key, with its default (None: required; ... : optional) -------------

_TOP_KEYS = (
    "prefix",
    "tags",
    "aws",
    "azure",
    "sshPublicKey",
    "sshPrivateKey",
    "adminCidrs",
    "allowSshFromAnywhere",
    "tunnel",
    "psk",
    "imageFile",
    "ha",
)
_AWS_KEYS = (
    "region",
    "vpcCidr",
    "gatewaySubnetCidr",
    "workloadSubnetCidrs",
    "vpcId",
    "gatewaySubnetId",
    "workloadRouteTableIds",
    "gatewayPrivateIp",
    "availabilityZone",
    "instanceType",
    "imageHasEna",
    "amiId",
    "amiOwner",
    "amiNameFilter",
    "adminUser",
    "testVm",
    "secondGatewaySubnetCidr",
    "secondAvailabilityZone",
)
_AWS_TEST_VM_KEYS = ("instanceType", "amiOwner", "amiNameFilter")
_AZURE_KEYS = (
    "location",
    "resourceGroupName",
    "vnetCidr",
    "gatewaySubnetCidr",
    "workloadSubnetCidrs",
    "vnetId",
    "gatewaySubnetId",
    "workloadRouteTableId",
    "gatewayPrivateIp",
    "vmSize",
    "imageId",
    "imageSpecialized",
    "adminUser",
    "testVm",
)
_AZURE_TEST_VM_KEYS = ("vmSize", "imagePublisher", "imageOffer", "imageSku", "imageVersion")
_HA_KEYS = ("enabled", "awsSteering", "awsAsn", "azureAsn", "routeServerAsn", "probePort", "azureZones")
_TUNNEL_KEYS = (
    "authMode", "ikeProposal", "childProposals", "dpdInterval", "awsRole", "azureRole", "requireUp",
)


def known_keys() -> list[str]:
    """Every key the program reads, dotted below its object (``aws.testVm.instanceType``)."""
    nested = {
        "aws": _AWS_KEYS,
        "azure": _AZURE_KEYS,
        "tunnel": _TUNNEL_KEYS,
        "ha": _HA_KEYS,
        "aws.testVm": _AWS_TEST_VM_KEYS,
        "azure.testVm": _AZURE_TEST_VM_KEYS,
    }
    keys = []
    for key in _TOP_KEYS:
        keys.append(key)
        keys += [f"{key}.{k}" for k in nested.get(key, ())]
        for sub in nested.get(key, ()):
            keys += [f"{key}.{sub}.{k}" for k in nested.get(f"{key}.{sub}", ())]
    return keys


T = TypeVar("T")


def _decoded(raw: Any) -> Any:
    """A config value as Pulumi hands it over: objects and lists arrive as JSON text."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


class _Reader:
    """Reads typed values out of raw config, collecting problems instead of raising."""

    def __init__(self, values: Mapping[str, str], secret_keys: Collection[str]) -> None:
        self.problems: list[str] = []
        self.secret_keys = set(secret_keys)
        self.top: dict[str, Any] = {}
        for full_key, raw in values.items():
            namespace, _, key = full_key.partition(":")
            if namespace != PROJECT:
                continue
            self.top[key] = raw
        self._check_unknown(self.top, _TOP_KEYS, "")

    def problem(self, text: str) -> None:
        self.problems.append(text)

    @staticmethod
    def name(key: str) -> str:
        return f"{PROJECT}:{key}"

    @classmethod
    def label(cls, key: str) -> str:
        """How a message names a key: quoted, with the namespace."""
        return f"'{cls.name(key)}'"

    def _check_unknown(self, obj: Mapping[str, Any], known: tuple[str, ...], prefix: str) -> None:
        for key in obj:
            if key not in known:
                by_lower = {k.lower(): k for k in known}
                matches = difflib.get_close_matches(key.lower(), by_lower, n=1, cutoff=0.6)
                close = [by_lower[m] for m in matches]
                hint = (
                    f"; did you mean '{self.name(prefix + close[0])}'?"
                    if close
                    else (f"; known keys here: {', '.join(known)}")
                )
                self.problem(f"unknown config key '{self.name(prefix + key)}'{hint}")

    def obj(
        self, key: str, known: tuple[str, ...], parent: Mapping[str, Any] | None = None, prefix: str = ""
    ) -> dict[str, Any] | None:
        source = self.top if parent is None else parent
        raw = source.get(key)
        if raw is None:
            return None
        value = _decoded(raw)
        if not isinstance(value, dict):
            self.problem(
                f"'{self.name(prefix + key)}' must be an object with keys {', '.join(known)}, got {raw!r}"
            )
            return None
        self._check_unknown(value, known, f"{prefix}{key}.")
        return value

    def get(
        self, source: Mapping[str, Any], key: str, kind: type[T], default: T | None, full: str
    ) -> T | None:
        raw = source.get(key)
        if raw is None:
            return default
        value = raw if kind is str else _decoded(raw)
        if kind is int and isinstance(value, bool):
            value = None
        if not isinstance(value, kind):
            self.problem(f"'{self.name(full)}' must be {_kind_name(kind)}, got {raw!r}")
            return default
        return value

    def required(self, source: Mapping[str, Any], key: str, full: str, how: str) -> str | None:
        value = self.get(source, key, str, None, full)
        if value is None or not value.strip():
            self.problem(f"'{self.name(full)}' is required: {how}")
            return None
        return value.strip()

    def str_list(
        self, source: Mapping[str, Any], key: str, full: str, default: tuple[str, ...] | None = None
    ) -> tuple[str, ...]:
        raw = source.get(key)
        if raw is None:
            if default is None:
                self.problem(f"'{self.name(full)}' is required: a list of one or more values")
                return ()
            return default
        value = _decoded(raw)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
            self.problem(f"'{self.name(full)}' must be a non-empty list of strings, got {raw!r}")
            return default or ()
        return tuple(v.strip() for v in value)

    def choice(
        self, source: Mapping[str, Any], key: str, full: str, choices: tuple[str, ...], default: str
    ) -> str:
        value = self.get(source, key, str, default, full) or default
        if value not in choices:
            self.problem(f"'{self.name(full)}' is {value!r}; use one of: {', '.join(choices)}")
            return default
        return value

    def secret(self, key: str, how: str, required: bool) -> Secret | None:
        raw = self.top.get(key)
        if raw is None or not str(raw).strip():
            if required:
                self.problem(f"'{self.name(key)}' is required: {how}")
            return None
        if self.name(key) not in self.secret_keys:
            self.problem(f"'{self.name(key)}' is stored in plain text; store it as a secret: {how}")
        return Secret(str(raw))


def _kind_name(kind: type) -> str:
    return {str: "a string", int: "a whole number", bool: "true or false", list: "a list"}.get(
        kind, kind.__name__
    )


def _cidr(reader: _Reader, value: str | None, key: str) -> str | None:
    """A valid IPv4 network, or None after recording why not."""
    if value is None:
        return None
    problem = checks.cidr_problem(reader.label(key), value)
    if problem:
        reader.problem(problem)
        return None
    return str(ipaddress.IPv4Network(value))


def _cidrs(reader: _Reader, values: tuple[str, ...], key: str) -> tuple[str, ...]:
    checked = [_cidr(reader, v, f"{key}[{i}]") for i, v in enumerate(values)]
    return tuple(c for c in checked if c is not None)


_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_RG_NAME = re.compile(r"^[-\w.()]*[-\w()]$")
#: A resource group name has 1-90 characters: "Naming rules and restrictions for Azure resources",
#: https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules#microsoftresources
AZURE_RESOURCE_GROUP_NAME_MAX = 90
#: Tags per resource: 50 on AWS ("Tag restrictions",
#: https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html) and on Azure ("Limitations",
#: https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources); 10 on an S3
#: object (https://docs.aws.amazon.com/AmazonS3/latest/userguide/tagging-managing.html).
MAX_TAGS_PER_RESOURCE = 50
MAX_TAGS_PER_S3_OBJECT = 10


def _site_networks(
    reader: _Reader, side: str, raw: Mapping[str, Any], net_key: str
) -> tuple[str | None, str | None, tuple[str, ...], str | None]:
    net = _cidr(
        reader,
        reader.required(
            raw, net_key, f"{side}.{net_key}", "the address space to create, like '10.10.0.0/16'"
        ),
        f"{side}.{net_key}",
    )
    gw = _cidr(
        reader,
        reader.required(
            raw, "gatewaySubnetCidr", f"{side}.gatewaySubnetCidr", "the gateway's subnet, like '10.10.0.0/24'"
        ),
        f"{side}.gatewaySubnetCidr",
    )
    workloads = _cidrs(
        reader,
        reader.str_list(raw, "workloadSubnetCidrs", f"{side}.workloadSubnetCidrs"),
        f"{side}.workloadSubnetCidrs",
    )
    gw_label = reader.label(f"{side}.gatewaySubnetCidr")
    size = None if gw is None else checks.gateway_subnet_problem(gw_label, gw)
    if size:
        reader.problem(size)
    second_key = f"{side}.secondGatewaySubnetCidr"
    second = _cidr(reader, reader.get(raw, "secondGatewaySubnetCidr", str, None, second_key), second_key)
    second_size = None if second is None else checks.gateway_subnet_problem(reader.label(second_key), second)
    if second_size:
        reader.problem(second_size)
    subnets = [(f"{side}.gatewaySubnetCidr", gw)] + ([(second_key, second)] if second else []) + [
        (f"{side}.workloadSubnetCidrs[{i}]", w) for i, w in enumerate(workloads)
    ]
    reader.problems += checks.subnet_layout_problems(
        None if net is None else (reader.label(f"{side}.{net_key}"), net),
        [(reader.label(k), v) for k, v in subnets if v is not None],
    )
    return net, gw, workloads, second


def _wants_test_vm(raw: Mapping[str, Any]) -> bool:
    return raw.get("testVm") not in (None, False, "false")


@dataclass(frozen=True)
class _NetworkKeys:
    """How one cloud names the keys of its network, and what its ids look like."""

    cidr: str
    existing: str
    route_tables: str
    many_route_tables: bool
    id_patterns: tuple[str, str, str]
    id_examples: tuple[str, str, str]


_AZ_ID = r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/"
_AWS_NETWORK = _NetworkKeys(
    "vpcCidr",
    "vpcId",
    "workloadRouteTableIds",
    True,
    (r"vpc-[0-9a-f]{8,17}", r"subnet-[0-9a-f]{8,17}", r"rtb-[0-9a-f]{8,17}"),
    ("vpc-0abc1234", "subnet-0abc1234", "rtb-0abc1234"),
)
_AZURE_NETWORK = _NetworkKeys(
    "vnetCidr",
    "vnetId",
    "workloadRouteTableId",
    False,
    (
        _AZ_ID + r"virtualNetworks/[^/]+",
        _AZ_ID + r"virtualNetworks/[^/]+/subnets/[^/]+",
        _AZ_ID + r"routeTables/[^/]+",
    ),
    (
        "/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Network/virtualNetworks/<name>",
        ".../virtualNetworks/<name>/subnets/<subnet>",
        "/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Network/routeTables/<name>",
    ),
)


def _parse_network(
    reader: _Reader, side: str, raw: Mapping[str, Any], keys: _NetworkKeys, has_test_vm: bool
) -> NetworkSettings | None:
    """Either the CIDRs of a network to create, or the ids of an existing one; never both."""

    def full(key: str) -> str:
        return f"{side}.{key}"

    fixed_ip = reader.get(raw, "gatewayPrivateIp", str, None, full("gatewayPrivateIp"))
    ip_label = reader.label(full("gatewayPrivateIp"))
    bad_ip = None if fixed_ip is None else checks.address_problem(ip_label, fixed_ip)
    if bad_ip:
        reader.problem(bad_ip)
        fixed_ip = None
    byo_set = [k for k in (keys.existing, "gatewaySubnetId", keys.route_tables) if raw.get(k) is not None]
    if not byo_set:
        net, gw, workloads, second = _site_networks(reader, side, raw, keys.cidr)
        outside = (
            None
            if fixed_ip is None or gw is None
            else checks.gateway_ip_problem(
                reader.label(full("gatewayPrivateIp")), fixed_ip, reader.label(full("gatewaySubnetCidr")), gw
            )
        )
        if outside:
            reader.problem(outside)
        if net is None or gw is None or not workloads or checks.gateway_subnet_problem("", gw):
            return None
        return NetworkSettings(
            cidr=net,
            gateway_subnet_cidr=gw,
            workload_subnet_cidrs=workloads,
            existing_id=None,
            gateway_subnet_id=None,
            workload_route_table_ids=(),
            gateway_private_ip=fixed_ip or host_address(gw, GATEWAY_HOST_INDEX),
            second_gateway_subnet_cidr=second,
        )
    for create_key in (keys.cidr, "gatewaySubnetCidr", "workloadSubnetCidrs"):
        if raw.get(create_key) is not None:
            reader.problem(
                f"'{reader.name(full(byo_set[0]))}' (bring your own network) and "
                f"'{reader.name(full(create_key))}' (create one) are both set; keep one of the two ways"
            )
    how = "to bring your own network, name the network, its gateway subnet and the workload route table"
    existing = reader.required(raw, keys.existing, full(keys.existing), how)
    subnet = reader.required(raw, "gatewaySubnetId", full("gatewaySubnetId"), how)
    if keys.many_route_tables:
        tables = reader.str_list(raw, keys.route_tables, full(keys.route_tables))
    else:
        table = reader.required(raw, keys.route_tables, full(keys.route_tables), how)
        tables = (table,) if table else ()
    labelled = [(keys.existing, existing), ("gatewaySubnetId", subnet)] + [
        (keys.route_tables if not keys.many_route_tables else f"{keys.route_tables}[{i}]", t)
        for i, t in enumerate(tables)
    ]
    for (key, value), pattern, example in zip(
        labelled,
        (*keys.id_patterns[:2], *[keys.id_patterns[2]] * len(tables)),
        (*keys.id_examples[:2], *[keys.id_examples[2]] * len(tables)),
        strict=False,
    ):
        if value is not None and not re.fullmatch(pattern, value, flags=re.IGNORECASE):
            reader.problem(f"'{reader.name(full(key))}' is {value!r}; it looks like '{example}'")
    if has_test_vm:
        reader.problem(
            f"'{reader.name(full('testVm'))}' needs a network the program creates; with "
            f"'{reader.name(full(keys.existing))}' set it to false"
        )
    if existing is None or subnet is None or not tables:
        return None
    return NetworkSettings(
        cidr=None,
        gateway_subnet_cidr=None,
        workload_subnet_cidrs=(),
        existing_id=existing,
        gateway_subnet_id=subnet,
        workload_route_table_ids=tables,
        gateway_private_ip=fixed_ip,
    )


def _admin_user(reader: _Reader, raw: Mapping[str, Any], side: str, default: str) -> str:
    """The user with doas the bootstrap logs in as (each cloud's images have their own default)."""
    user = reader.get(raw, "adminUser", str, default, f"{side}.adminUser") or default
    bad = checks.user_name_problem(reader.label(side + ".adminUser"), user)
    if bad:
        reader.problem(bad)
    return user


def _parse_aws(reader: _Reader, image_file_set: bool) -> AwsSettings | None:
    raw = reader.obj("aws", _AWS_KEYS)
    if raw is None:
        reader.problem(f"'{reader.name('aws')}' is required: the AWS side (see Pulumi.dev.yaml)")
        return None
    region = reader.required(raw, "region", "aws.region", "an AWS region like 'eu-west-1'")
    network = _parse_network(reader, "aws", raw, _AWS_NETWORK, _wants_test_vm(raw))
    ami_id = reader.get(raw, "amiId", str, None, "aws.amiId")
    owner = reader.get(raw, "amiOwner", str, None, "aws.amiOwner")
    name_filter = reader.get(raw, "amiNameFilter", str, None, "aws.amiNameFilter")
    if image_file_set:
        for key, value in (("amiId", ami_id), ("amiOwner", owner), ("amiNameFilter", name_filter)):
            if value:
                reader.problem(
                    f"'{reader.name('imageFile')}' and '{reader.name('aws.' + key)}' ({value!r}) are "
                    f"both set; the image file becomes the AMI, so remove '{reader.name('aws.' + key)}'"
                )
    elif ami_id and (owner or name_filter):
        reader.problem(
            f"'{reader.name('aws.amiId')}' is {ami_id!r} and an AMI lookup "
            f"('{reader.name('aws.amiOwner')}'/'{reader.name('aws.amiNameFilter')}') is set too; keep one"
        )
    elif not ami_id and not (owner and name_filter):
        reader.problem(
            f"the OpenBSD image is missing: set '{reader.name('aws.amiId')}' (ami-...) or both "
            f"'{reader.name('aws.amiOwner')}' and '{reader.name('aws.amiNameFilter')}' "
            f"(got owner={owner!r}, filter={name_filter!r}), or '{reader.name('imageFile')}'"
        )
    if ami_id and not re.fullmatch(r"ami-[0-9a-f]{8,17}", ami_id):
        reader.problem(f"'{reader.name('aws.amiId')}' is {ami_id!r}; an AMI id looks like 'ami-0abc1234'")
    admin_user = _admin_user(reader, raw, "aws", "ec2-user")
    test_vm = None
    tv = reader.obj("testVm", _AWS_TEST_VM_KEYS, raw, "aws.") if _wants_test_vm(raw) else None
    if tv is not None:
        test_vm = AwsTestVm(
            instance_type=reader.get(tv, "instanceType", str, "t3.micro", "aws.testVm.instanceType")
            or "t3.micro",
            ami_owner=reader.get(tv, "amiOwner", str, "136693071363", "aws.testVm.amiOwner")
            or "136693071363",
            ami_name_filter=reader.get(
                tv, "amiNameFilter", str, "debian-12-amd64-*", "aws.testVm.amiNameFilter"
            )
            or "debian-12-amd64-*",
        )
    instance_type = (
        reader.get(raw, "instanceType", str, DEFAULT_AWS_INSTANCE_TYPE, "aws.instanceType")
        or DEFAULT_AWS_INSTANCE_TYPE
    )
    image_has_ena = bool(reader.get(raw, "imageHasEna", bool, False, "aws.imageHasEna"))
    type_problem = None if image_has_ena else instance_type_problem(instance_type)
    if type_problem:
        reader.problem(
            f"'{reader.name('aws.instanceType')}' is {instance_type!r}: {type_problem}; or, if your "
            f"image has its own ENA driver, set '{reader.name('aws.imageHasEna')}' to true"
        )
    if region is None or network is None:
        return None
    return AwsSettings(
        region=region,
        network=network,
        availability_zone=reader.get(raw, "availabilityZone", str, None, "aws.availabilityZone"),
        instance_type=instance_type,
        image_has_ena=image_has_ena,
        ami_id=ami_id,
        ami_owner=owner,
        ami_name_filter=name_filter,
        admin_user=admin_user,
        test_vm=test_vm,
    )


def _parse_azure(reader: _Reader, image_file_set: bool) -> AzureSettings | None:
    raw = reader.obj("azure", _AZURE_KEYS)
    if raw is None:
        reader.problem(f"'{reader.name('azure')}' is required: the Azure side (see Pulumi.dev.yaml)")
        return None
    location = reader.required(raw, "location", "azure.location", "an Azure location like 'westeurope'")
    rg = reader.required(
        raw,
        "resourceGroupName",
        "azure.resourceGroupName",
        "the resource group to create, like 'ccvpn-dev' (with vnetId: an existing one for the gateway)",
    )
    if rg is not None and len(rg) > AZURE_RESOURCE_GROUP_NAME_MAX:
        reader.problem(
            f"'{reader.name('azure.resourceGroupName')}' is {rg!r}: {len(rg)} characters, and Azure "
            f"takes at most {AZURE_RESOURCE_GROUP_NAME_MAX} for a resource group name"
        )
    elif rg is not None and image_file_set and (
        len(images := images_resource_group_name(rg)) > AZURE_RESOURCE_GROUP_NAME_MAX
    ):
        reader.problem(
            f"'{reader.name('azure.resourceGroupName')}' is {rg!r}: with '{reader.name('imageFile')}' "
            f"the image goes to the resource group {images!r}, {len(images)} characters, over Azure's "
            f"limit of {AZURE_RESOURCE_GROUP_NAME_MAX}; use at most "
            f"{AZURE_RESOURCE_GROUP_NAME_MAX - len(images) + len(rg)} characters"
        )
    if rg is not None and not _RG_NAME.fullmatch(rg):
        reader.problem(
            f"'{reader.name('azure.resourceGroupName')}' is {rg!r}: use letters, digits, "
            "'-', '_', '.', '(' and ')', not ending in '.'"
        )
    network = _parse_network(reader, "azure", raw, _AZURE_NETWORK, _wants_test_vm(raw))
    image_id = reader.get(raw, "imageId", str, None, "azure.imageId")
    if image_file_set and image_id:
        reader.problem(
            f"'{reader.name('imageFile')}' and '{reader.name('azure.imageId')}' ({image_id!r}) are both "
            f"set; the image file becomes the Azure image, so remove '{reader.name('azure.imageId')}'"
        )
    elif not image_file_set and not image_id:
        reader.problem(
            f"'{reader.name('azure.imageId')}' is required: the id of your OpenBSD managed image or "
            "gallery image version (/subscriptions/.../images/... or .../galleries/.../versions/...), "
            f"or set '{reader.name('imageFile')}'"
        )
    if image_id is not None and not image_id.lower().startswith("/subscriptions/"):
        reader.problem(
            f"'{reader.name('azure.imageId')}' is {image_id!r}; an image id starts with '/subscriptions/'"
        )
    admin_user = _admin_user(reader, raw, "azure", "azure-user")
    test_vm = None
    tv = reader.obj("testVm", _AZURE_TEST_VM_KEYS, raw, "azure.") if _wants_test_vm(raw) else None
    if tv is not None:

        def tget(key: str, default: str) -> str:
            return reader.get(tv, key, str, default, f"azure.testVm.{key}") or default

        test_vm = AzureTestVm(
            vm_size=tget("vmSize", "Standard_B1s"),
            image_publisher=tget("imagePublisher", "Debian"),
            image_offer=tget("imageOffer", "debian-12"),
            image_sku=tget("imageSku", "12-gen2"),
            image_version=tget("imageVersion", "latest"),
        )
    if location is None or rg is None or network is None:
        return None
    return AzureSettings(
        location=location,
        resource_group_name=rg,
        network=network,
        vm_size=reader.get(raw, "vmSize", str, "Standard_B2s", "azure.vmSize") or "Standard_B2s",
        image_id=image_id,
        image_specialized=bool(reader.get(raw, "imageSpecialized", bool, False, "azure.imageSpecialized")),
        admin_user=admin_user,
        test_vm=test_vm,
    )


def _parse_access(reader: _Reader) -> AccessSettings | None:
    how_pub = 'pulumi config set sshPublicKey "$(cat ~/.ssh/id_ed25519.pub)"'
    pub = reader.required(reader.top, "sshPublicKey", "sshPublicKey", how_pub)
    bad_key = None if pub is None else checks.ssh_public_key_problem(reader.label("sshPublicKey"), pub)
    if bad_key:
        reader.problem(bad_key)
    private = reader.secret(
        "sshPrivateKey", "pulumi config set --secret sshPrivateKey < ~/.ssh/id_rsa", required=True
    )
    if private is not None and "PRIVATE KEY-----" not in private.value:
        reader.problem(
            f"'{reader.name('sshPrivateKey')}' is not a PEM/OpenSSH private key "
            "(no '-----BEGIN ... PRIVATE KEY-----' line)"
        )
    admin = _cidrs(reader, reader.str_list(reader.top, "adminCidrs", "adminCidrs"), "adminCidrs")
    anywhere = reader.get(reader.top, "allowSshFromAnywhere", bool, False, "allowSshFromAnywhere")
    reader.problems += checks.admin_cidr_problems(
        [(reader.label(f"adminCidrs[{i}]"), c) for i, c in enumerate(admin)],
        bool(anywhere),
        reader.label("allowSshFromAnywhere"),
    )
    if pub is None or private is None or not admin:
        return None
    return AccessSettings(
        ssh_public_key=pub, ssh_private_key=private, admin_cidrs=admin, allow_ssh_from_anywhere=bool(anywhere)
    )


def _parse_tunnel(reader: _Reader) -> TunnelSettings:
    raw = reader.obj("tunnel", _TUNNEL_KEYS) or {}
    mode = cast(AuthMode, reader.choice(raw, "authMode", "tunnel.authMode", ("pubkey", "psk"), "pubkey"))
    psk_how = 'pulumi config set --secret psk "$(openssl rand -base64 32)"'
    psk = reader.secret("psk", psk_how, required=mode == "psk")
    if mode == "pubkey" and psk is not None:
        reader.problem(
            f"'{reader.name('psk')}' is set but '{reader.name('tunnel.authMode')}' is "
            "'pubkey'; remove the psk or set authMode to 'psk'"
        )
    if mode == "psk" and psk is not None:
        why = psk_problem_text(psk.value)
        if why:
            reader.problem(f"'{reader.name('psk')}' {why} ({psk_how})")
    ike = (
        reader.get(raw, "ikeProposal", str, DEFAULT_IKE_PROPOSAL, "tunnel.ikeProposal")
        or DEFAULT_IKE_PROPOSAL
    )
    for why in proposal_problems(ike, "ike"):
        reader.problem(f"'{reader.name('tunnel.ikeProposal')}' is {ike!r}: {why}")
    children = reader.str_list(raw, "childProposals", "tunnel.childProposals", DEFAULT_CHILD_PROPOSALS)
    for i, child in enumerate(children):
        for why in proposal_problems(child, "child"):
            reader.problem(f"'{reader.name(f'tunnel.childProposals[{i}]')}' is {child!r}: {why}")
    dpd = reader.get(raw, "dpdInterval", int, DEFAULT_DPD_INTERVAL, "tunnel.dpdInterval")
    bad_dpd = checks.dpd_problem(reader.label("tunnel.dpdInterval"), dpd)
    if dpd is None or bad_dpd:
        reader.problem(bad_dpd or f"{reader.label('tunnel.dpdInterval')} is missing")
        dpd = DEFAULT_DPD_INTERVAL
    roles = ("active", "passive")
    aws_role = cast(Role, reader.choice(raw, "awsRole", "tunnel.awsRole", roles, "active"))
    azure_role = cast(Role, reader.choice(raw, "azureRole", "tunnel.azureRole", roles, "active"))
    both = checks.roles_problem(
        reader.label("tunnel.awsRole"), aws_role, reader.label("tunnel.azureRole"), azure_role
    )
    if both:
        reader.problem(both)
    return TunnelSettings(
        auth_mode=mode,
        psk=psk,
        ike_proposal=ike,
        child_proposals=children,
        dpd_interval=dpd,
        aws_role=aws_role,
        azure_role=azure_role,
        require_up=bool(reader.get(raw, "requireUp", bool, True, "tunnel.requireUp")),
    )


def _asn(reader: _Reader, raw: Mapping[str, Any], key: str, default: int) -> int:
    value = reader.get(raw, key, int, default, f"ha.{key}")
    if value is None or not 1 <= value <= 4294967295:
        reader.problem(f"{reader.label('ha.' + key)} is {value!r}: use a private AS number "
                       "(64512-65534 or 4200000000-4294967294)")
        return default
    return value


def _parse_ha(reader: _Reader, aws: AwsSettings | None, azure: AzureSettings | None) -> HaSettings | None:
    """``ha``: off by default; on, two gateways per side (research/ha.md, README "High availability")."""
    raw = reader.obj("ha", _HA_KEYS) or {}
    enabled = bool(reader.get(raw, "enabled", bool, False, "ha.enabled"))
    aws_raw = _decoded(reader.top.get("aws"))
    aws_raw = aws_raw if isinstance(aws_raw, dict) else {}
    if not enabled:
        stray = [f"'{reader.name(k)}'" for k in ("aws.secondGatewaySubnetCidr", "aws.secondAvailabilityZone")
                 if aws_raw.get(k.split(".")[1]) is not None]
        stray += [f"'{reader.name('ha.' + k)}'" for k in _HA_KEYS
                  if k != "enabled" and raw.get(k) is not None]
        if stray:
            reader.problem(f"{', '.join(stray)} {'is' if len(stray) == 1 else 'are'} set but "
                           f"'{reader.name('ha.enabled')}' is not true: set it, or remove them")
        return None
    steering = cast(AwsSteering, reader.choice(raw, "awsSteering", "ha.awsSteering",
                                               ("route-tables", "route-server"), "route-tables"))
    aws_asn = _asn(reader, raw, "awsAsn", DEFAULT_AWS_ASN)
    azure_asn = _asn(reader, raw, "azureAsn", DEFAULT_AZURE_ASN)
    rs_asn = _asn(reader, raw, "routeServerAsn", DEFAULT_ROUTE_SERVER_ASN)
    if len({aws_asn, azure_asn, rs_asn}) < 3:
        reader.problem(f"{reader.label('ha.awsAsn')} {aws_asn}, {reader.label('ha.azureAsn')} {azure_asn} "
                       f"and {reader.label('ha.routeServerAsn')} {rs_asn} must all differ "
                       "(eBGP between them)")
    port = reader.get(raw, "probePort", int, DEFAULT_PROBE_PORT, "ha.probePort")
    try:
        check_probe_port(port if port is not None else -1)
    except ValueError as err:
        reader.problem(f"{reader.label('ha.probePort')} is {port!r}: {err}")
    zones = reader.str_list(raw, "azureZones", "ha.azureZones", DEFAULT_AZURE_ZONES)
    if len(zones) != 2 or zones[0] == zones[1]:
        reader.problem(f"{reader.label('ha.azureZones')} is {list(zones)!r}: name two different zones, "
                       "one per gateway, like ['1', '2']")
        zones = DEFAULT_AZURE_ZONES
    second_zone = reader.get(aws_raw, "secondAvailabilityZone", str, None, "aws.secondAvailabilityZone")
    for side, settings in (("aws", aws), ("azure", azure)):
        if settings is not None and settings.network.brings_own:
            reader.problem(f"'{reader.name('ha.enabled')}' is true with '{reader.name(side + '.')}"
                           f"{'vpcId' if side == 'aws' else 'vnetId'}': HA mode needs networks the program "
                           "creates (the components take your own; see docs/components.md)")
    if aws is not None and not aws.network.brings_own and aws.network.second_gateway_subnet_cidr is None:
        reader.problem(f"'{reader.name('ha.enabled')}' is true but "
                       f"'{reader.name('aws.secondGatewaySubnetCidr')}' is not set: the second AWS "
                       "gateway's subnet, in another zone (an AWS subnet lives in one zone), like "
                       "'10.10.2.0/24'")
    if aws is not None and aws.availability_zone and not second_zone:
        reader.problem(f"'{reader.name('aws.availabilityZone')}' is set but "
                       f"'{reader.name('aws.secondAvailabilityZone')}' is not: name both gateways' zones")
    if second_zone and aws is not None and second_zone == aws.availability_zone:
        reader.problem(f"'{reader.name('aws.secondAvailabilityZone')}' is {second_zone!r}, the same as "
                       f"'{reader.name('aws.availabilityZone')}': the two gateways need two zones")
    gw_subnet = azure.network.gateway_subnet_cidr if azure is not None else None
    if gw_subnet is None:
        return None
    return HaSettings(
        aws_steering=steering,
        aws_asn=aws_asn,
        azure_asn=azure_asn,
        route_server_asn=rs_asn,
        probe_port=port or DEFAULT_PROBE_PORT,
        aws_second_availability_zone=second_zone,
        azure_zones=(zones[0], zones[1]),
        azure_second_gateway_ip=host_address(gw_subnet, AZURE_SECOND_GATEWAY_HOST_INDEX),
        azure_load_balancer_ip=host_address(gw_subnet, AZURE_LOAD_BALANCER_HOST_INDEX),
    )


def _network_cidrs(side: str, keys: _NetworkKeys, net: NetworkSettings) -> list[tuple[str, str]]:
    """Every CIDR of a created network with the key that set it (a BYO network has none yet)."""
    labelled = [(f"{side}.{keys.cidr}", net.cidr), (f"{side}.gatewaySubnetCidr", net.gateway_subnet_cidr),
                (f"{side}.secondGatewaySubnetCidr", net.second_gateway_subnet_cidr)]
    labelled += [(f"{side}.workloadSubnetCidrs[{i}]", c) for i, c in enumerate(net.workload_subnet_cidrs)]
    return [(k, c) for k, c in labelled if c is not None]


def overlap_problems(aws: list[tuple[str, str]], azure: list[tuple[str, str]]) -> list[str]:
    """Pairs of CIDRs across the sides that overlap, as messages naming both keys."""
    return checks.overlap_problems(
        [(_Reader.label(k), c) for k, c in aws], [(_Reader.label(k), c) for k, c in azure]
    )


def _check_sides_apart(reader: _Reader, aws: AwsSettings | None, azure: AzureSettings | None) -> None:
    if aws is None or azure is None:
        return
    reader.problems += overlap_problems(
        _network_cidrs("aws", _AWS_NETWORK, aws.network),
        _network_cidrs("azure", _AZURE_NETWORK, azure.network),
    )


def parse_settings(
    values: Mapping[str, str], secret_keys: Collection[str], stack: str = "dev"
) -> StackSettings:
    """Check the whole config at once; raise :class:`ConfigProblems` listing every problem."""
    reader = _Reader(values, secret_keys)
    prefix = reader.get(reader.top, "prefix", str, None, "prefix") or f"ccvpn-{stack}".lower()[:20]
    if not _NAME.fullmatch(prefix):
        reader.problem(
            f"'{reader.name('prefix')}' is {prefix!r}; use 1-20 lowercase letters, digits "
            "and '-', starting with a letter (it starts every resource name)"
        )
    tags_raw = _tags(reader)
    image_file = _image_file(reader)
    image_file_set = reader.top.get("imageFile") is not None
    _check_tag_count(reader, {"project": PROJECT, "stack": stack, **tags_raw}, image_file_set)
    aws = _parse_aws(reader, image_file_set)
    azure = _parse_azure(reader, image_file_set)
    access = _parse_access(reader)
    tunnel = _parse_tunnel(reader)
    ha = _parse_ha(reader, aws, azure)
    _check_sides_apart(reader, aws, azure)
    if reader.problems:
        raise ConfigProblems(reader.problems)
    assert aws is not None and azure is not None and access is not None
    return StackSettings(
        image_file=image_file,
        prefix=prefix,
        aws=aws,
        azure=azure,
        access=access,
        tunnel=tunnel,
        tags={"project": PROJECT, "stack": stack, **tags_raw},
        ha=ha,
    )


def _image_file(reader: _Reader) -> ImageInfo | None:
    """The disk image named by ``imageFile``, checked (format, boot sector, size) and hashed."""
    path = reader.get(reader.top, "imageFile", str, None, "imageFile")
    if path is None:
        return None
    try:
        return inspect_image(path)
    except DiskImageError as err:
        reader.problem(f"'{reader.name('imageFile')}' is {path!r}: {err}")
        return None


def _tags(reader: _Reader) -> dict[str, str]:
    raw = reader.top.get("tags")
    if raw is None:
        return {}
    value = _decoded(raw)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        reader.problem(f"'{reader.name('tags')}' must be an object of string values, got {raw!r}")
        return {}
    return {str(k): v for k, v in value.items()}


def _check_tag_count(reader: _Reader, tags: Mapping[str, str], image_file_set: bool) -> None:
    """Every resource gets the stack's tags and one of its own (AWS ``Name``, an image's hash)."""
    limit = MAX_TAGS_PER_S3_OBJECT if image_file_set else MAX_TAGS_PER_RESOURCE
    if len(tags) < limit:
        return
    why = (
        f"with '{reader.name('imageFile')}' the disk image's S3 object gets all of them (the AWS "
        f"provider's default tags) and its ImageSha256 tag, and S3 takes at most {limit} tags per object"
        if image_file_set
        else "every resource gets them and one tag of its own (Name on AWS, the image hash on Azure), "
        f"and AWS and Azure take at most {limit} tags per resource"
    )
    reader.problem(
        f"'{reader.name('tags')}' makes {len(tags)} tags with project and stack: {why}; "
        f"use at most {limit - 1}, project and stack included"
    )


def load_settings() -> StackSettings:
    """Read this Pulumi program's config; one ``pulumi.RunError`` lists every problem."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    # The language host hands config over with set_all_config (older hosts: environment).
    values: dict[str, str] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = {
        key
        for key in values
        if runtime_config.is_config_secret(key) or key in runtime_config.get_config_secret_keys_env()
    }
    try:
        return parse_settings(values, secret_keys, pulumi.get_stack())
    except ConfigProblems as err:
        raise pulumi.RunError(str(err)) from None
