"""HA mode's set of tunnels: gateway n of one side joined to gateway n of the other.

Each tunnel is an :class:`Ikev2GatewayPair` (A1<->B1, A2<->B2): its own policy-based iked
tunnel, which in HA mode also carries a BGP session between its two gateways (the sites'
``endpoints()`` fill each endpoint's ``ha``). The pairs are independent: a fault in one leaves
the other's tunnel, SAs and sessions alone, and each side's steering (AWS route server or the
gateways' own route writes; the Azure load balancer's probe) moves traffic to the pair whose
session is up.

The arguments are the pair's, with ``left``/``right`` as lists. The Pulumi schema analyzer reads
a field's description from the class that declares it (not from a base class), so the shared
fields are declared here again, each pointing at :class:`Ikev2GatewayPairArgs` for the details.
"""

from collections.abc import Sequence
from typing import Any, NotRequired, TypedDict, cast

import pulumi

from .gateway_pair import Ikev2GatewayPair, Ikev2GatewayPairArgs
from .site import GatewayEndpointArgs, IkeAuthMode, IkeRole, refuse


class Ikev2TunnelSetArgs(TypedDict):
    """The gateways of both sides, joined in order, and how every tunnel is set up."""

    left: Sequence[GatewayEndpointArgs]
    """One side's gateways (``AwsSite.endpoints()``, ``AzureSite.endpoints()``), in order."""
    right: Sequence[GatewayEndpointArgs]
    """The other side's gateways; as many as ``left``. Gateway n is joined to ``left[n]``."""
    ssh_private_key: pulumi.Input[str]
    """As in :class:`Ikev2GatewayPairArgs`; every gateway of both sides accepts it."""
    admin_cidrs: pulumi.Input[Sequence[pulumi.Input[str]]]
    """As in :class:`Ikev2GatewayPairArgs`: networks allowed to SSH to every gateway."""
    allow_ssh_from_anywhere: NotRequired[bool | None]
    """As in :class:`Ikev2GatewayPairArgs`."""
    auth_mode: NotRequired[IkeAuthMode | None]
    """As in :class:`Ikev2GatewayPairArgs`; the same for every tunnel."""
    psk: NotRequired[pulumi.Input[str] | None]
    """As in :class:`Ikev2GatewayPairArgs` (a secret); the same for every tunnel."""
    ike_proposal: NotRequired[str | None]
    """As in :class:`Ikev2GatewayPairArgs`."""
    child_proposals: NotRequired[Sequence[str] | None]
    """As in :class:`Ikev2GatewayPairArgs`."""
    dpd_interval: NotRequired[int | None]
    """As in :class:`Ikev2GatewayPairArgs`."""
    left_role: NotRequired[IkeRole | None]
    """As in :class:`Ikev2GatewayPairArgs`, for every left gateway."""
    right_role: NotRequired[IkeRole | None]
    """As in :class:`Ikev2GatewayPairArgs`, for every right gateway."""
    tunnel_check_seconds: NotRequired[int | None]
    """As in :class:`Ikev2GatewayPairArgs`."""
    require_tunnel_up: NotRequired[bool | None]
    """As in :class:`Ikev2GatewayPairArgs`, for every tunnel."""


class Ikev2TunnelSet(pulumi.ComponentResource):
    """One :class:`Ikev2GatewayPair` per gateway index (``name-1``, ``name-2``, ...)."""

    tunnel_status: pulumi.Output[str]
    """What each tunnel's check saw at deploy time, e.g. "aws-1: up, azure-1: up; aws-2: up,
    azure-2: up" (not a live status)."""
    left_iked_confs: pulumi.Output[list[str]]
    """The iked.conf pushed to each left gateway, in order (secrets in PSK mode)."""
    right_iked_confs: pulumi.Output[list[str]]
    """The iked.conf pushed to each right gateway, in order (secrets in PSK mode)."""

    def __init__(
        self, name: str, args: Ikev2TunnelSetArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Check that both sides have as many gateways, then join gateway n to gateway n."""
        super().__init__("cross-cloud-vpn:index:Ikev2TunnelSet", name, None, opts)
        left, right = list(args["left"]), list(args["right"])
        problems = []
        if not left or not right:
            problems.append(f"'left' has {len(left)} gateways and 'right' {len(right)}: "
                            "each side needs at least one")
        elif len(left) != len(right):
            problems.append(f"'left' has {len(left)} gateways and 'right' {len(right)}: a tunnel "
                            "joins gateway n of one side to gateway n of the other, so give both "
                            "sides as many")
        refuse(f"Ikev2TunnelSet {name!r}", problems)
        shared: dict[str, Any] = {k: v for k, v in args.items() if k not in ("left", "right")}
        self.pairs = [
            Ikev2GatewayPair(
                f"{name}-{n}",
                cast(Ikev2GatewayPairArgs, {**shared, "left": a, "right": b}),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for n, (a, b) in enumerate(zip(left, right, strict=True), start=1)
        ]
        self.tunnel_status = pulumi.Output.all(*(p.tunnel_status for p in self.pairs)).apply(
            lambda parts: "; ".join(parts)
        )
        self.left_iked_confs = pulumi.Output.all(*(p.left_iked_conf for p in self.pairs)).apply(list)
        self.right_iked_confs = pulumi.Output.all(*(p.right_iked_conf for p in self.pairs)).apply(list)
        self.register_outputs(
            {
                "tunnel_status": self.tunnel_status,
                "left_iked_confs": self.left_iked_confs,
                "right_iked_confs": self.right_iked_confs,
            }
        )
