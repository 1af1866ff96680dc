"""What the gateway pair needs from each side: plain values and outputs, from any program.

The pair takes no site object, so a TypeScript or YAML program (through the component
package) and a Python one pass the same thing: an :class:`GatewayEndpointArgs` per side, which
:meth:`AwsSite.endpoint`/:meth:`AzureSite.endpoint` build, or which a caller fills in for a
gateway made some other way.
"""

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, NotRequired, TypedDict

import pulumi


class IkeAuthMode(StrEnum):
    """How the two gateways authenticate each other."""

    PUBKEY = "pubkey"
    """Each gateway's own iked key pair; only the public keys cross."""
    PSK = "psk"
    """A pre-shared key (a secret)."""


class IkeRole(StrEnum):
    """Whether a gateway starts the IKE exchange."""

    ACTIVE = "active"
    PASSIVE = "passive"


class GatewayEndpointArgs(TypedDict):
    """One gateway behind a 1:1 public IP, as the pair sees it."""

    site: str
    """Short name of the side ("aws", "azure"): names policies, resources and outputs."""
    admin_user: str
    """The user with doas the bootstrap logs in as."""
    public_ip: pulumi.Input[str]
    gateway_private_ip: pulumi.Input[str]
    cidrs: pulumi.Input[Sequence[str]]
    """The networks behind the gateway: the local side of every tunnel flow."""
    gateway_ready: pulumi.Input[str]
    """An id that exists once the machine and its public IP do; the bootstrap waits for it."""
    machine_id: NotRequired[pulumi.Input[str] | None]
    """The gateway machine's id (instance or VM id). When it changes (a new machine), every SSH
    step of this side runs again and the peer learns the new machine's key; default
    ``gateway_ready``."""
    aws_security_group_id: NotRequired[pulumi.Input[str] | None]
    """AWS: the gateway's security group, which gets the peer-only IKE/ESP rules."""
    azure_resource_group_name: NotRequired[pulumi.Input[str] | None]
    """Azure: resource group of the gateway's NSG."""
    azure_network_security_group_name: NotRequired[pulumi.Input[str] | None]
    """Azure: the gateway's NSG, which gets the peer-only IKE/ESP rules."""


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
