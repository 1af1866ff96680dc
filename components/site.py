"""What the gateway pair needs from each side: plain values and outputs, from any program.

The pair takes no site object, so a TypeScript or YAML program (through the component
package) and a Python one pass the same thing: an :class:`GatewayEndpointArgs` per side, which
:meth:`AwsSite.endpoint`/:meth:`AzureSite.endpoint` build, or which a caller fills in for a
gateway made some other way.
"""

from collections.abc import Sequence
from enum import StrEnum
from typing import NotRequired, TypedDict

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
    aws_security_group_id: NotRequired[pulumi.Input[str] | None]
    """AWS: the gateway's security group, which gets the peer-only IKE/ESP rules."""
    azure_resource_group_name: NotRequired[pulumi.Input[str] | None]
    """Azure: resource group of the gateway's NSG."""
    azure_network_security_group_name: NotRequired[pulumi.Input[str] | None]
    """Azure: the gateway's NSG, which gets the peer-only IKE/ESP rules."""


def host_cidr(ip: str) -> str:
    """``ip`` as a one-address network, the way firewall rules name a single peer."""
    return f"{ip}/32"
