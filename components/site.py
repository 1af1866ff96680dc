"""What the gateway pair needs from each side: plain values and outputs, from any program.

The pair takes no site object, so a TypeScript or YAML program (through the component
package) and a Python one pass the same thing: an :class:`GatewayEndpointArgs` per side, which
:meth:`AwsSite.endpoint`/:meth:`AzureSite.endpoint` build, or which a caller fills in for a
gateway made some other way.
"""

from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any, NamedTuple, NotRequired, TypedDict, TypeVar, cast

import pulumi
import pulumi_aws
import pulumi_azure_native

from cross_cloud_vpn import checks


class IkeAuthMode(StrEnum):
    """How the two gateways authenticate each other."""

    PUBKEY = "pubkey"
    """Each gateway's own iked key pair; only the public keys cross."""
    PSK = "psk"
    """A pre-shared key (a secret)."""


class IkeRole(StrEnum):
    """Whether a gateway starts the IKE exchange."""

    ACTIVE = "active"
    """Starts the exchange (and answers)."""
    PASSIVE = "passive"
    """Only answers the peer."""


class RouteTableSteeringArgs(TypedDict):
    """AWS HA steering that costs nothing: the two gateways of a side rewrite the workload route
    tables' routes to the remote networks themselves (EC2 ``ReplaceRoute`` through their instance
    role); the standby takes over when the primary's probe responder stops answering."""

    region: pulumi.Input[str]
    """The AWS region of the route tables (the EC2 API endpoint the gateway calls)."""
    route_table_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    """The workload route tables whose routes to the remote networks the gateways move."""
    partner_private_ip: pulumi.Input[str]
    """The other gateway of this side: its probe responder says whether it is healthy."""


class GatewayHaArgs(TypedDict):
    """HA mode (two gateways per side, one tunnel each): how this gateway takes part.

    Each tunnel carries a BGP session between its two gateways' private addresses; a gateway
    holds the other cloud's networks only while that session is up, and its cloud steers by
    that: AWS through route servers (``route_server_addresses``) or the gateways' own route
    table writes (``route_tables``); Azure through the internal load balancer's health probe
    (``probe_port``)."""

    bgp_as: int
    """This side's private AS number (the same on both gateways of a side)."""
    standby: bool
    """The second gateway of a side: the steering prefers the other one while it is healthy."""
    route_server_addresses: NotRequired[pulumi.Input[Sequence[pulumi.Input[str]]] | None]
    """AWS route-server steering: the route server endpoints this gateway re-announces to."""
    route_server_as: NotRequired[int | None]
    """AWS route-server steering: the route server's AS number."""
    probe_port: NotRequired[int | None]
    """The TCP port of the health responder (Azure: the load balancer's probe; AWS
    route-table steering: the partner gateway's probe)."""
    route_tables: NotRequired[RouteTableSteeringArgs | None]
    """AWS route-table steering ($0): what the gateway rewrites."""


class GatewayEndpointArgs(TypedDict):
    """One gateway behind a 1:1 public IP, as the pair sees it."""

    site: str
    """Short name of the side ("aws", "azure"; lowercase letters, digits, '-'): names policies,
    resources and outputs, so the two sides of a pair need two names."""
    admin_user: pulumi.Input[str]
    """The user with doas the bootstrap logs in as."""
    public_ip: pulumi.Input[str]
    """The 1:1 public address of the gateway (iked's ``peer`` for the other side; SSH)."""
    gateway_private_ip: pulumi.Input[str]
    """The gateway's own address (iked's ``local``)."""
    local_cidrs: pulumi.Input[Sequence[pulumi.Input[str]]]
    """The networks behind the gateway: the local side of every tunnel flow."""
    gateway_ready: pulumi.Input[str]
    """An id that exists once the machine and its public IP do; the bootstrap waits for it."""
    machine_id: NotRequired[pulumi.Input[str] | None]
    """The gateway machine's id (instance or VM id). When it changes (a new machine), every SSH
    step of this side runs again and the peer learns the new machine's key; default
    ``gateway_ready``."""
    remote_cidrs: NotRequired[pulumi.Input[Sequence[pulumi.Input[str]]] | None]
    """The networks this side routes to its gateway; the pair checks they are the peer's
    ``local_cidrs`` (else routes and tunnel flows disagree)."""
    aws_security_group_id: NotRequired[pulumi.Input[str] | None]
    """AWS: the gateway's security group, which gets the peer-only IKE/ESP rules."""
    aws_provider: NotRequired[pulumi_aws.Provider | None]
    """AWS: the site's provider (account and region): the pair's rules for this side use it."""
    azure_resource_group_name: NotRequired[pulumi.Input[str] | None]
    """Azure: resource group of the gateway's NSG."""
    azure_network_security_group_name: NotRequired[pulumi.Input[str] | None]
    """Azure: the gateway's NSG, which gets the peer-only IKE/ESP rules."""
    azure_provider: NotRequired[pulumi_azure_native.Provider | None]
    """Azure: the site's provider (subscription): the pair's rules for this side use it."""
    ha: NotRequired[GatewayHaArgs | None]
    """HA mode only (a site built with two gateways): this gateway's part in the set of
    tunnels. Both sides of a pair have it, or neither."""


class ComponentInputError(pulumi.RunError):
    """A component's argument that cannot work: names the component, the argument and the value.

    A ``RunError``, so Pulumi prints the message alone (no traceback), and raised before the
    component registers any child when the value is known; an Output is checked as soon as it
    resolves, and the message still names the argument.
    """


def refuse(component: str, problems: Sequence[str]) -> None:
    """Raise one :class:`ComponentInputError` listing every problem, if there is any."""
    if problems:
        listed = problems[0] if len(problems) == 1 else "".join(f"\n  - {p}" for p in problems)
        raise ComponentInputError(f"{component}: {listed}")


def is_plain(value: Any) -> bool:
    """Whether ``value`` is known now: no Output (or awaitable) anywhere inside it."""
    if isinstance(value, pulumi.Output) or hasattr(value, "__await__"):
        return False
    if isinstance(value, Mapping):
        return all(is_plain(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(is_plain(v) for v in value)
    return True


T = TypeVar("T")


def checked(component: str, value: pulumi.Input[T], check: Callable[[T], list[str]]) -> pulumi.Input[T]:
    """``value``, checked now when it is known, else as soon as it resolves (see :func:`deferred`)."""
    if is_plain(value):
        refuse(component, check(cast(T, value)))
    return deferred(component, value, check)


def deferred(component: str, value: pulumi.Input[T], check: Callable[[T], list[str]]) -> pulumi.Input[T]:
    """``value``; an Output is checked as soon as it resolves (failing the update with the same
    message, not the SDK's wrapper). A known value is returned as it is: the component checked
    it with all its other known arguments at construction."""
    if is_plain(value):
        return value

    def run(resolved: T) -> T:
        refuse(component, check(resolved))
        return resolved

    return pulumi.Output.from_input(value).apply(run)


def for_each(values: pulumi.Input[Sequence[pulumi.Input[str]]], make: Callable[[str], object]) -> None:
    """``make`` a resource per value: now for a known list, once it resolves for an Output
    (those resources then show in a preview only when the list is known there too)."""
    if is_plain(values):
        for value in cast(Sequence[str], values):
            make(value)
        return
    pulumi.Output.from_input(values).apply(lambda resolved: [make(str(v)) for v in resolved])


def joined(*lists: pulumi.Input[Sequence[str]]) -> pulumi.Input[Sequence[str]]:
    """The lists one after the other: a plain list when all are known, else an Output."""
    if all(is_plain(values) for values in lists):
        return [v for values in lists for v in cast(Sequence[str], values)]
    return pulumi.Output.all(*lists).apply(lambda resolved: [v for values in resolved for v in values])


def listed(problem: str | None) -> list[str]:
    """One rule's answer as a list of problems."""
    return [problem] if problem else []


def labelled(label: str, values: Sequence[str]) -> list[tuple[str, str]]:
    """``[(label[0], v0), (label[1], v1), ...]``: list entries named for a message."""
    return [(f"'{label}[{i}]'", v) for i, v in enumerate(values)]


def common_site_problems(args: Mapping[str, Any], cidr_key: str) -> list[str]:
    """What both sites check the same way, on the values known now (Outputs: see :func:`checked`).

    The network to create (``cidr_key`` is ``vpc_cidr``/``vnet_cidr``): valid CIDRs, subnets
    inside it and apart, a gateway subnet big enough, the fixed gateway IP inside it; the
    remote networks apart from the local ones; admin networks (0.0.0.0/0 only with
    ``allow_ssh_from_anywhere``); the SSH key type; the admin user's name.
    """
    problems: list[str] = []
    outer = args.get(cidr_key)
    gateway_subnet: str = args.get("gateway_subnet_cidr") or ""
    workloads = args.get("workload_subnet_cidrs") or []
    if outer:
        subnets = [("'gateway_subnet_cidr'", gateway_subnet), *labelled("workload_subnet_cidrs", workloads)]
        problems += checks.cidr_list_problems([(f"'{cidr_key}'", outer), *subnets])
        problems += checks.subnet_layout_problems((f"'{cidr_key}'", outer), subnets)
        problems += listed(checks.gateway_subnet_problem("'gateway_subnet_cidr'", gateway_subnet))
    fixed = args.get("gateway_private_ip")
    if fixed and is_plain(fixed):
        bad = (
            checks.gateway_ip_problem("'gateway_private_ip'", fixed, "'gateway_subnet_cidr'", gateway_subnet)
            if gateway_subnet
            else checks.address_problem("'gateway_private_ip'", fixed)
        )
        problems += [bad] if bad else []
    local = [(f"'{cidr_key}'", outer)] if outer else []
    if not outer and is_plain(args.get("local_cidrs")):
        local = labelled("local_cidrs", args.get("local_cidrs") or [])
        problems += checks.cidr_list_problems(local)
    if is_plain(args["remote_cidrs"]):
        problems += remote_problems(local, args["remote_cidrs"])
    if is_plain(args["admin_cidrs"]):
        problems += admin_problems(args["admin_cidrs"], bool(args.get("allow_ssh_from_anywhere")))
    if is_plain(args["ssh_public_key"]):
        problems += listed(checks.ssh_public_key_problem("'ssh_public_key'", args["ssh_public_key"]))
    user = args.get("admin_user")
    if user and is_plain(user):
        problems += listed(checks.user_name_problem("'admin_user'", user))
    return problems


class SiteInputs(NamedTuple):
    """A site's arguments that may be Outputs, each checked (see :func:`checked_site_inputs`)."""

    local_cidrs: pulumi.Input[Sequence[str]]
    remote_cidrs: pulumi.Input[Sequence[str]]
    admin_cidrs: pulumi.Input[Sequence[str]]
    ssh_public_key: pulumi.Input[str]
    admin_user: pulumi.Output[str]


def checked_site_inputs(
    component: str, args: Mapping[str, Any], cidr_key: str, default_user: str
) -> SiteInputs:
    """A site's local and remote networks, admin networks, SSH key and admin user (default
    ``default_user``). Known values were checked by :func:`common_site_problems`; an Output is
    checked as soon as it resolves."""
    local: pulumi.Input[Sequence[str]] = args.get("local_cidrs") or args.get("workload_subnet_cidrs") or []
    outer = args.get(cidr_key)
    local = deferred(component, local, lambda c: checks.cidr_list_problems(labelled("local_cidrs", c)))
    remote: pulumi.Input[Sequence[str]] = args["remote_cidrs"]
    if not (is_plain(local) and is_plain(remote)):
        # The overlap check needs both sides of it; the remote list is what the site uses.
        def both(values: list[Any]) -> list[str]:
            named_local = [(f"'{cidr_key}'", outer)] if outer else labelled("local_cidrs", values[0])
            refuse(component, remote_problems(named_local, values[1]))
            return list(values[1])

        remote = pulumi.Output.all(local, remote).apply(both)
    admin = deferred(
        component,
        args["admin_cidrs"],
        lambda cidrs: admin_problems(cidrs, bool(args.get("allow_ssh_from_anywhere"))),
    )
    key = deferred(
        component,
        args["ssh_public_key"],
        lambda k: listed(checks.ssh_public_key_problem("'ssh_public_key'", k)),
    )
    user = deferred(
        component,
        args.get("admin_user") or default_user,
        lambda u: listed(checks.user_name_problem("'admin_user'", u)),
    )
    return SiteInputs(local, remote, admin, key, pulumi.Output.from_input(user))


def remote_problems(local: Sequence[tuple[str, str]], remote: Sequence[str]) -> list[str]:
    """Remote networks: valid, at least one, none overlapping a local one."""
    named = labelled("remote_cidrs", remote)
    empty = [] if remote else ["'remote_cidrs' is empty: name the peer's networks"]
    return empty + checks.cidr_list_problems(named) + checks.overlap_problems(local, named)


def admin_problems(cidrs: Sequence[str], allow_anywhere: bool) -> list[str]:
    empty = [] if cidrs else ["'admin_cidrs' is empty: name the networks allowed to SSH to the gateway"]
    return empty + checks.admin_cidr_problems(
        labelled("admin_cidrs", cidrs), allow_anywhere, "'allow_ssh_from_anywhere'"
    )


def cidr_slug(cidr: str) -> str:
    """A CIDR as part of a resource name (``10.10.1.0/24`` -> ``10-10-1-0-24``).

    Resources made per list entry are named after their value, not their place: inserting or
    removing an entry then creates or deletes only that entry's resources.
    """
    return cidr.replace(".", "-").replace("/", "-")


def host_cidr(ip: str) -> str:
    """``ip`` as a one-address network, the way firewall rules name a single peer."""
    return f"{ip}/32"


def network_mode_problems(args: Mapping[str, Any], cidr_key: str, id_key: str, route_key: str) -> list[str]:
    """Why a site's args are neither a complete "create" nor a complete "bring your own" network.

    The clouds differ only in names: ``vpc_cidr``/``vnet_cidr``, ``vpc_id``/``vnet_id`` and their
    route table key.
    """
    create = (cidr_key, "gateway_subnet_cidr", "workload_subnet_cidrs")
    byo = ("gateway_subnet_id", route_key, "local_cidrs")
    if not args.get(id_key):
        return [] if all(args.get(k) for k in create) else [f"set {', '.join(create)}, or {id_key}"]
    problems = [] if all(args.get(k) for k in byo) else [f"{id_key} needs {', '.join(byo)}"]
    if any(args.get(k) for k in create):
        problems.append(f"{id_key} (bring your own) cannot go with {'/'.join(create)} (create)")
    if args.get("test_vm"):
        problems.append(f"test_vm needs a created network (no workload subnet is known with {id_key})")
    return problems
