"""What the gateway pair needs from a cloud site, whichever cloud it is."""

from __future__ import annotations

from typing import Protocol

import pulumi


class GatewaySite(Protocol):
    """A network with one OpenBSD gateway behind a 1:1 public IP."""

    site: str
    """Short name of the side ("aws", "azure"): names policies, resources and outputs."""
    admin_user: str
    """The user with doas the bootstrap logs in as."""
    public_ip: pulumi.Output[str]
    gateway_private_ip: pulumi.Output[str]
    cidrs: pulumi.Output[list[str]]
    """Workload networks behind the gateway: the local side of every tunnel flow."""
    gateway: pulumi.Resource
    """The gateway machine; the bootstrap starts once it (and its public IP) exist."""

    def allow_ike_from(
        self, name: str, peer_public_ip: pulumi.Input[str], opts: pulumi.ResourceOptions
    ) -> list[pulumi.Resource]:
        """Rules letting IKE (udp 500, 4500) and ESP in from the peer's public IP only."""
        ...


def host_cidr(ip: str) -> str:
    """``ip`` as a one-address network, the way firewall rules name a single peer."""
    return f"{ip}/32"
