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

The pair takes each side as a :class:`GatewayEndpointArgs` (values and outputs, no site
object), so it works the same from Python and, through the component package, from any
language.
"""

import hashlib
from collections.abc import Sequence
from typing import Any, NotRequired, TypedDict

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
    render_gateway,
    render_read_pubkey_script,
    render_tunnel_check_script,
)

from .aws_site import aws_peer_rules
from .azure_site import azure_peer_rules
from .site import GatewayEndpointArgs, IkeAuthMode, IkeRole

#: How long the first SSH dial may keep failing while an instance boots.
SSH_WAIT_TIMEOUT = "20m"
DEFAULT_TUNNEL_CHECK_SECONDS = 180


class Ikev2GatewayPairArgs(TypedDict):
    """The two gateways to join and how the tunnel between them is set up."""

    left: GatewayEndpointArgs
    right: GatewayEndpointArgs
    ssh_private_key: pulumi.Input[str]
    """The key both gateways accept for their admin user. Made a secret here in any case."""
    admin_cidrs: Sequence[str]
    """Networks allowed to SSH to the gateways (pf.conf)."""
    auth_mode: NotRequired[IkeAuthMode | None]
    """Default ``pubkey``."""
    psk: NotRequired[pulumi.Input[str] | None]
    """The pre-shared key in ``psk`` mode (a secret)."""
    ike_proposal: NotRequired[str | None]
    child_proposals: NotRequired[Sequence[str] | None]
    dpd_interval: NotRequired[int | None]
    """Seconds between liveness checks (0: off); default 30."""
    left_role: NotRequired[IkeRole | None]
    """Default ``active``: both sides initiate, with enforcesingleikesa."""
    right_role: NotRequired[IkeRole | None]
    tunnel_check_seconds: NotRequired[int | None]
    """How long the final check waits for an established SA; default 180."""
    require_tunnel_up: NotRequired[bool | None]
    """Fail the update when the tunnel is not up within ``tunnel_check_seconds``, with what the
    gateway sees (default); ``False`` only reports it in ``tunnel_status``."""


def _peer_rules(
    name: str, endpoint: GatewayEndpointArgs, peer_ip: pulumi.Input[str], opts: pulumi.ResourceOptions
) -> list[pulumi.Resource]:
    """The cloud's firewall rules admitting IKE/ESP from the peer only; none for a gateway elsewhere."""
    if endpoint.get("aws_security_group_id"):
        return aws_peer_rules(name, endpoint.get("aws_security_group_id") or "", peer_ip, opts)
    rg, nsg = endpoint.get("azure_resource_group_name"), endpoint.get("azure_network_security_group_name")
    if rg and nsg:
        return azure_peer_rules(name, rg, nsg, peer_ip, opts, after=endpoint["gateway_ready"])
    return []


class Ikev2GatewayPair(pulumi.ComponentResource):
    """Two OpenBSD gateways running iked, each configured over SSH from the other's outputs."""

    iked_conf: dict[str, pulumi.Output[str]]
    """The exact iked.conf pushed to each site (a secret in PSK mode)."""
    pf_conf: dict[str, pulumi.Output[str]]
    """The exact pf.conf pushed to each site."""
    iked_public_key: dict[str, pulumi.Output[str]]
    """Each gateway's own iked public key, as it printed it."""
    tunnel_status: pulumi.Output[str]
    """"aws: up, azure: up" once both gateways see an established SA with child SAs."""

    def __init__(
        self, name: str, args: Ikev2GatewayPairArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cross-cloud-vpn:index:Ikev2GatewayPair", name, None, opts)
        mode = IkeAuthMode(args.get("auth_mode") or IkeAuthMode.PUBKEY)
        if mode == IkeAuthMode.PSK and not args.get("psk"):
            raise ValueError("Ikev2GatewayPair: auth_mode 'psk' needs a psk")
        sites = (args["left"], args["right"])
        if sites[0]["site"] == sites[1]["site"]:
            raise ValueError(f"Ikev2GatewayPair: both sides are named {sites[0]['site']!r}")
        roles = {
            sites[0]["site"]: IkeRole(args.get("left_role") or IkeRole.ACTIVE),
            sites[1]["site"]: IkeRole(args.get("right_role") or IkeRole.ACTIVE),
        }
        # Values from other languages arrive as floats; 0 is a value (dpd off, no wait), not "unset".
        dpd_interval = int(_given(args.get("dpd_interval"), DEFAULT_DPD_INTERVAL))
        check_seconds = int(_given(args.get("tunnel_check_seconds"), DEFAULT_TUNNEL_CHECK_SECONDS))
        require_up = bool(_given(args.get("require_tunnel_up"), True))
        ike_proposal = args.get("ike_proposal") or DEFAULT_IKE_PROPOSAL
        child_proposals = list(args.get("child_proposals") or DEFAULT_CHILD_PROPOSALS)
        admin_cidrs = list(args["admin_cidrs"])
        private_key = pulumi.Output.secret(args["ssh_private_key"])
        psk = pulumi.Output.secret(args.get("psk")) if mode == IkeAuthMode.PSK else None

        rules: list[pulumi.Resource] = []
        for site, peer in (sites, sites[::-1]):
            rules += _peer_rules(
                f"{name}-{site['site']}-from-{peer['site']}",
                site,
                peer["public_ip"],
                pulumi.ResourceOptions(parent=self),
            )

        def connection(
            site: GatewayEndpointArgs, dial_error_limit: int | None = None
        ) -> remote.ConnectionArgs:
            return remote.ConnectionArgs(
                host=site["public_ip"],
                user=site["admin_user"],
                private_key=private_key,
                dial_error_limit=dial_error_limit,
                per_dial_timeout=30,
            )

        # Every SSH step of a side runs again on a new machine (its id changes), even though
        # its addresses, and so everything rendered for it, stay the same; nothing else re-runs
        # them but a changed file (stdin).
        machine = {s["site"]: s.get("machine_id") or s["gateway_ready"] for s in sites}
        public_keys: dict[str, pulumi.Output[str]] = {}
        waits: dict[str, remote.Command] = {}
        for site in sites:
            name_of = f"{name}-{site['site']}"
            waits[site["site"]] = remote.Command(
                f"{name_of}-wait-ssh",
                connection=connection(site, dial_error_limit=-1),
                create="uname -sr",
                # Starts once the machine and its public IP exist; a new machine waits again.
                triggers=[site["gateway_ready"], machine[site["site"]]],
                opts=pulumi.ResourceOptions(
                    parent=self,
                    custom_timeouts=pulumi.CustomTimeouts(create=SSH_WAIT_TIMEOUT),
                ),
            )
            read_key = remote.Command(
                f"{name_of}-pubkey",
                connection=connection(site),
                create=REMOTE_SHELL,
                stdin=render_read_pubkey_script(),
                # A new machine has a new key: read it again.
                triggers=[machine[site["site"]]],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[waits[site["site"]]]),
            )
            public_keys[site["site"]] = read_key.stdout

        self.iked_conf, self.pf_conf, configures = {}, {}, []
        digests: list[pulumi.Output[str]] = []
        for site, peer in (sites, sites[::-1]):
            here, there = site["site"], peer["site"]

            def render(values: list[Any], here: str = here, there: str = there) -> RenderedGateway:
                private_ip, public_ip, peer_ip, local_cidrs, remote_cidrs, peer_key, secret = values
                auth: PubkeyAuth | PskAuth = PskAuth(secret) if mode == IkeAuthMode.PSK else PubkeyAuth()
                return render_gateway(
                    GatewaySpec(
                        site=here,
                        peer_site=there,
                        private_ip=private_ip,
                        public_ip=public_ip,
                        peer_public_ip=peer_ip,
                        local_cidrs=list(local_cidrs),
                        remote_cidrs=list(remote_cidrs),
                        admin_cidrs=admin_cidrs,
                        auth=auth,
                        peer_public_key=peer_key if mode == IkeAuthMode.PUBKEY else None,
                        role=roles[here].value,
                        ike_proposal=ike_proposal,
                        child_proposals=child_proposals,
                        dpd_interval=dpd_interval,
                    )
                )

            rendered = pulumi.Output.all(
                site["gateway_private_ip"],
                site["public_ip"],
                peer["public_ip"],
                site["cidrs"],
                peer["cidrs"],
                public_keys[there] if mode == IkeAuthMode.PUBKEY else None,
                psk,
            ).apply(render)
            bootstrap = rendered.apply(lambda r: r.bootstrap)
            digests.append(bootstrap.apply(lambda text: hashlib.sha256(text.encode()).hexdigest()))
            self.iked_conf[here] = rendered.apply(lambda r: r.iked_conf)
            self.pf_conf[here] = rendered.apply(lambda r: r.pf_conf)
            configures.append(
                remote.Command(
                    f"{name}-{here}-configure",
                    connection=connection(site),
                    create=REMOTE_SHELL,
                    stdin=bootstrap,
                    # Runs again on a new machine (trigger) and when a rendered file or the peer's
                    # key changes (stdin), and only then.
                    triggers=[machine[here]],
                    # Only iked/pfctl complaints and one status line; nothing secret is printed.
                    logging=remote.Logging.STDERR,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[waits[here], *rules]),
                )
            )

        statuses = []
        for site in sites:
            check = remote.Command(
                f"{name}-{site['site']}-check",
                connection=connection(site),
                create=REMOTE_SHELL,
                stdin=render_tunnel_check_script(check_seconds, require_up=require_up),
                # Checks again whenever either side was configured again.
                triggers=[*machine.values(), *digests],
                opts=pulumi.ResourceOptions(parent=self, depends_on=configures),
            )
            statuses.append(_status(site["site"], check.stdout))
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


def _given(value: Any, default: Any) -> Any:
    """``value`` unless it was left out (None); unlike ``value or default``, 0 and False count."""
    return default if value is None else value


def _status(site: str, stdout: pulumi.Output[str]) -> pulumi.Output[str]:
    """``"<site>: up"`` from the check script's first line (``tunnel: up``/``tunnel: down``)."""

    def first_line(text: str | None) -> str:
        lines = (text or "").strip().splitlines()
        return f"{site}: {lines[0].removeprefix('tunnel: ') if lines else 'no answer'}"

    return stdout.apply(first_line)
