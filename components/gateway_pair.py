"""The IKEv2 gateway pair: joins two sites, configuring each gateway over SSH from the other's outputs.

Per side, with pulumi-command over SSH to the gateway's public IP:

1. ``wait-ssh``: dials until the freshly booted machine answers (unlimited dial errors,
   bounded by a create timeout), so the steps after it do not run out of retries;
2. ``pubkey``: prints the gateway's own iked public key (``/etc/iked/local.pub``), making the
   pair first if boot did not; the private key never leaves the host;
3. ``configure``: feeds the bootstrap rendered by :mod:`cross_cloud_vpn.openbsd` from the
   *other* side's outputs to ``doas /bin/sh -s`` on stdin; it checks every file with
   ``iked -n``/``pfctl -nf`` before installing any, then restarts iked and reloads pf;
4. ``check``: once both sides are configured, waits for an established IKE SA.

The peer-only IKE/ESP rules are made here too (through each site's ``allow_ike_from``), so
the two sites stay independent: neither waits for the other cloud while it builds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
from pulumi_command import remote

from cross_cloud_vpn.openbsd import (
    DEFAULT_CHILD_PROPOSALS,
    DEFAULT_DPD_INTERVAL,
    DEFAULT_IKE_PROPOSAL,
    REMOTE_SHELL,
    GatewaySpec,
    PskAuth,
    PubkeyAuth,
    RenderedGateway,
    Role,
    render_gateway,
    render_read_pubkey_script,
    render_tunnel_check_script,
)

from .site import GatewaySite

#: How long the first SSH dial may keep failing while an instance boots.
SSH_WAIT_TIMEOUT = "20m"


@dataclass(frozen=True)
class Ikev2GatewayPairArgs:
    """The two sites to join and how the tunnel between them is set up."""

    left: GatewaySite
    right: GatewaySite
    ssh_private_key: pulumi.Input[str]
    """The key both gateways accept for their admin user. Made a secret here in any case."""
    admin_cidrs: Sequence[str]
    auth_mode: Literal["pubkey", "psk"] = "pubkey"
    psk: pulumi.Input[str] | None = None
    ike_proposal: str = DEFAULT_IKE_PROPOSAL
    child_proposals: Sequence[str] = DEFAULT_CHILD_PROPOSALS
    dpd_interval: int = DEFAULT_DPD_INTERVAL
    roles: Mapping[str, Role] = field(default_factory=dict)
    """Per site name; a site not named is ``active``."""
    tunnel_check_seconds: int = 180


class Ikev2GatewayPair(pulumi.ComponentResource):
    """Two OpenBSD gateways running iked, each configured from the other's outputs."""

    iked_conf: dict[str, pulumi.Output[str]]
    """The exact iked.conf pushed to each site (a secret in PSK mode)."""
    pf_conf: dict[str, pulumi.Output[str]]
    iked_public_key: dict[str, pulumi.Output[str]]
    tunnel_status: pulumi.Output[str]

    def __init__(
        self, name: str, args: Ikev2GatewayPairArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cross-cloud-vpn:tunnel:Ikev2GatewayPair", name, None, opts)
        if args.auth_mode == "psk" and args.psk is None:
            raise ValueError("Ikev2GatewayPair: auth_mode 'psk' needs a psk")
        sites = (args.left, args.right)
        if sites[0].site == sites[1].site:
            raise ValueError(f"Ikev2GatewayPair: both sites are named {sites[0].site!r}")
        private_key = pulumi.Output.secret(args.ssh_private_key)
        psk = None if args.psk is None else pulumi.Output.secret(args.psk)

        rules: list[pulumi.Resource] = []
        for site, peer in (sites, sites[::-1]):
            rules += site.allow_ike_from(
                f"{name}-{site.site}-from-{peer.site}", peer.public_ip, pulumi.ResourceOptions(parent=self)
            )

        def connection(site: GatewaySite, dial_error_limit: int | None = None) -> remote.ConnectionArgs:
            return remote.ConnectionArgs(
                host=site.public_ip, user=site.admin_user, private_key=private_key,
                dial_error_limit=dial_error_limit, per_dial_timeout=30,
            )

        public_keys: dict[str, pulumi.Output[str]] = {}
        waits: dict[str, remote.Command] = {}
        for site in sites:
            waits[site.site] = remote.Command(
                f"{name}-{site.site}-wait-ssh",
                connection=connection(site, dial_error_limit=-1),
                create="uname -sr",
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[site.gateway],
                    custom_timeouts=pulumi.CustomTimeouts(create=SSH_WAIT_TIMEOUT),
                ),
            )
            read_key = remote.Command(
                f"{name}-{site.site}-pubkey",
                connection=connection(site),
                create=REMOTE_SHELL,
                stdin=render_read_pubkey_script(),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[waits[site.site]]),
            )
            public_keys[site.site] = read_key.stdout

        self.iked_conf, self.pf_conf, configures = {}, {}, []
        for site, peer in (sites, sites[::-1]):
            role = args.roles.get(site.site, "active")

            def render(values: list[Any], site: GatewaySite = site, peer: GatewaySite = peer,
                       role: Role = role) -> RenderedGateway:
                private_ip, public_ip, peer_ip, local_cidrs, remote_cidrs, peer_key, secret = values
                auth: PubkeyAuth | PskAuth = PskAuth(secret) if args.auth_mode == "psk" else PubkeyAuth()
                return render_gateway(
                    GatewaySpec(
                        site=site.site, peer_site=peer.site, private_ip=private_ip, public_ip=public_ip,
                        peer_public_ip=peer_ip, local_cidrs=local_cidrs, remote_cidrs=remote_cidrs,
                        admin_cidrs=list(args.admin_cidrs), auth=auth,
                        peer_public_key=peer_key if args.auth_mode == "pubkey" else None,
                        role=role, ike_proposal=args.ike_proposal,
                        child_proposals=list(args.child_proposals), dpd_interval=args.dpd_interval,
                    )
                )

            rendered = pulumi.Output.all(
                site.gateway_private_ip, site.public_ip, peer.public_ip, site.cidrs, peer.cidrs,
                public_keys[peer.site] if args.auth_mode == "pubkey" else None, psk,
            ).apply(render)
            bootstrap = rendered.apply(lambda r: r.bootstrap)
            self.iked_conf[site.site] = rendered.apply(lambda r: r.iked_conf)
            self.pf_conf[site.site] = rendered.apply(lambda r: r.pf_conf)
            configures.append(
                remote.Command(
                    f"{name}-{site.site}-configure",
                    connection=connection(site),
                    create=REMOTE_SHELL,
                    stdin=bootstrap,
                    # Re-run exactly when a rendered file or the peer's key changes.
                    triggers=[bootstrap.apply(lambda text: hashlib.sha256(text.encode()).hexdigest())],
                    # Only iked/pfctl complaints and one status line; nothing secret is printed.
                    logging=remote.Logging.STDERR,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[waits[site.site], *rules]),
                )
            )

        statuses = []
        for site in sites:
            check = remote.Command(
                f"{name}-{site.site}-check",
                connection=connection(site),
                create=REMOTE_SHELL,
                stdin=render_tunnel_check_script(args.tunnel_check_seconds),
                triggers=[c.triggers for c in configures],
                opts=pulumi.ResourceOptions(parent=self, depends_on=configures),
            )
            statuses.append(_status(site.site, check.stdout))
        self.iked_public_key = public_keys
        self.tunnel_status = pulumi.Output.all(*statuses).apply(lambda parts: ", ".join(parts))
        self.register_outputs(
            {
                "iked_conf": self.iked_conf,
                "pf_conf": self.pf_conf,
                "iked_public_key": self.iked_public_key,
                "tunnel_status": self.tunnel_status,
            }
        )


def _status(site: str, stdout: pulumi.Output[str]) -> pulumi.Output[str]:
    """``"<site>: up"`` from the check script's first line (``tunnel: up``/``tunnel: down``)."""

    def first_line(text: str | None) -> str:
        lines = (text or "").strip().splitlines()
        return f"{site}: {lines[0].removeprefix('tunnel: ') if lines else 'no answer'}"

    return stdout.apply(first_line)
