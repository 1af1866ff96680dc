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
import re
from collections.abc import Sequence
from typing import Any, NotRequired, TypedDict, cast

import pulumi
from pulumi_command import remote

from cross_cloud_vpn import checks
from cross_cloud_vpn.openbsd import (
    DEFAULT_CHILD_PROPOSALS,
    DEFAULT_DPD_INTERVAL,
    DEFAULT_IKE_PROPOSAL,
    REMOTE_SHELL,
    GatewayHa,
    GatewaySpec,
    PskAuth,
    PubkeyAuth,
    RenderedGateway,
    RouteServers,
    RouteTableSteering,
    proposal_problems,
    psk_problem_text,
    render_gateway,
    render_read_pubkey_script,
    render_tunnel_check_script,
)

from .aws_site import aws_peer_rules
from .azure_site import azure_peer_rules
from .site import (
    GatewayEndpointArgs,
    GatewayHaArgs,
    IkeAuthMode,
    IkeRole,
    admin_problems,
    checked,
    deferred,
    is_plain,
    listed,
    refuse,
)

#: How long the first SSH dial may keep failing while an instance boots.
SSH_WAIT_TIMEOUT = "20m"
DEFAULT_TUNNEL_CHECK_SECONDS = 180


class Ikev2GatewayPairArgs(TypedDict):
    """The two gateways to join and how the tunnel between them is set up. Every argument is
    checked when the pair is constructed (an Output as soon as it resolves)."""

    left: GatewayEndpointArgs
    """One side: ``AwsSite.endpoint()``, ``AzureSite.endpoint()``, or your own gateway."""
    right: GatewayEndpointArgs
    """The other side; its ``site`` name must differ from the left one's."""
    ssh_private_key: pulumi.Input[str]
    """The key both gateways accept for their admin user. Made a secret here in any case."""
    admin_cidrs: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Networks allowed to SSH to the gateways (pf.conf); the machine running ``pulumi up`` must
    be in one of them, or the next update cannot reach the gateways."""
    allow_ssh_from_anywhere: NotRequired[bool | None]
    """Needed for ``0.0.0.0/0`` in ``admin_cidrs``; default no."""
    auth_mode: NotRequired[IkeAuthMode | None]
    """``pubkey`` (default) or ``psk``; a ``psk`` with another mode is refused, not dropped."""
    psk: NotRequired[pulumi.Input[str] | None]
    """The pre-shared key in ``psk`` mode (made a secret here): 20 or more printable
    characters, no ``"`` or backslash, not starting with ``0x``."""
    ike_proposal: NotRequired[str | None]
    """IKE SA proposal in iked.conf(5) words; default
    ``enc aes-256-gcm prf hmac-sha2-256 group curve25519``."""
    child_proposals: NotRequired[Sequence[str] | None]
    """Child SA proposals in order of preference; default AES-GCM, then AES-CBC + SHA2-512."""
    dpd_interval: NotRequired[int | None]
    """Seconds between liveness checks (0: off); default 30."""
    left_role: NotRequired[IkeRole | None]
    """Default ``active``: both sides initiate, with enforcesingleikesa."""
    right_role: NotRequired[IkeRole | None]
    """Default ``active``; not both ``passive``."""
    tunnel_check_seconds: NotRequired[int | None]
    """How long the final check waits for an established SA; default 180."""
    require_tunnel_up: NotRequired[bool | None]
    """Fail the update when the tunnel is not up within ``tunnel_check_seconds``, with what the
    gateway sees (default); ``False`` only reports it in ``tunnel_status``."""


def _peer_rules(
    name: str, endpoint: GatewayEndpointArgs, peer_ip: pulumi.Input[str], parent: pulumi.Resource
) -> list[pulumi.Resource]:
    """The cloud's firewall rules admitting IKE/ESP from the peer only; none for a gateway elsewhere.

    They go through the site's own provider (its account, subscription and region), not the
    default one.
    """
    if endpoint.get("aws_security_group_id"):
        opts = pulumi.ResourceOptions(parent=parent, provider=endpoint.get("aws_provider"))
        return aws_peer_rules(name, endpoint.get("aws_security_group_id") or "", peer_ip, opts)
    rg, nsg = endpoint.get("azure_resource_group_name"), endpoint.get("azure_network_security_group_name")
    if rg and nsg:
        opts = pulumi.ResourceOptions(parent=parent, provider=endpoint.get("azure_provider"))
        return azure_peer_rules(name, rg, nsg, peer_ip, opts, after=endpoint["gateway_ready"])
    return []


class Ikev2GatewayPair(pulumi.ComponentResource):
    """Two OpenBSD gateways running iked, each configured over SSH from the other's outputs:
    peer-only firewall rules, then per side an SSH wait, its iked public key, the bootstrap
    (iked.conf, pf.conf, the peer's key; checked on the host before installing) and a tunnel
    check."""

    left_iked_conf: pulumi.Output[str]
    """The exact iked.conf pushed to the left gateway (a secret in PSK mode)."""
    right_iked_conf: pulumi.Output[str]
    """The exact iked.conf pushed to the right gateway (a secret in PSK mode)."""
    left_pf_conf: pulumi.Output[str]
    """The exact pf.conf pushed to the left gateway."""
    right_pf_conf: pulumi.Output[str]
    """The exact pf.conf pushed to the right gateway."""
    left_iked_public_key: pulumi.Output[str]
    """The left gateway's own iked public key, as it printed it (pubkey mode)."""
    right_iked_public_key: pulumi.Output[str]
    """The right gateway's own iked public key, as it printed it (pubkey mode)."""
    tunnel_status: pulumi.Output[str]
    """What the check saw at deploy time, e.g. "aws: up, azure: up" (not a live status)."""

    def __init__(
        self, name: str, args: Ikev2GatewayPairArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Check ``args`` (every problem at once, before any child), then join the two gateways."""
        super().__init__("cross-cloud-vpn:index:Ikev2GatewayPair", name, None, opts)
        component = f"Ikev2GatewayPair {name!r}"
        refuse(component, _pair_problems(args))
        mode = IkeAuthMode(args.get("auth_mode") or IkeAuthMode.PUBKEY)
        sites = (args["left"], args["right"])
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
        admin_cidrs = deferred(
            component,
            args["admin_cidrs"],
            lambda cidrs: admin_problems(
                cast(Sequence[str], cidrs), bool(args.get("allow_ssh_from_anywhere"))
            ),
        )
        private_key = pulumi.Output.secret(args["ssh_private_key"])
        psk = None
        if mode == IkeAuthMode.PSK:
            psk = pulumi.Output.secret(
                deferred(component, args.get("psk") or "", _psk_problems)
            )
        # Nothing is rendered before every late check has passed.
        agreed = [_check_same_networks(component, side, other) for side, other in (sites, sites[::-1])]

        rules: list[pulumi.Resource] = []
        for site, peer in (sites, sites[::-1]):
            rules += _peer_rules(f"{name}-{site['site']}-from-{peer['site']}", site, peer["public_ip"], self)

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

        iked_conf: dict[str, pulumi.Output[str]] = {}
        pf_conf: dict[str, pulumi.Output[str]] = {}
        configures: list[remote.Command] = []
        digests: list[pulumi.Output[str]] = []
        for site, peer in (sites, sites[::-1]):
            here, there = site["site"], peer["site"]
            here_ha, there_ha = site.get("ha"), peer.get("ha")

            def render(
                values: list[Any],
                here: str = here,
                there: str = there,
                ha_args: GatewayHaArgs | None = here_ha,
                peer_ha: GatewayHaArgs | None = there_ha,
            ) -> RenderedGateway:
                # The values after the tenth are the late checks, passed by the time this runs.
                (private_ip, public_ip, peer_ip, local_cidrs, remote_cidrs, peer_key, secret, admin,
                 peer_private_ip, steering) = values[:10]
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
                        admin_cidrs=list(admin),
                        auth=auth,
                        peer_public_key=peer_key if mode == IkeAuthMode.PUBKEY else None,
                        role=roles[here].value,
                        ike_proposal=ike_proposal,
                        child_proposals=child_proposals,
                        dpd_interval=dpd_interval,
                        ha=_gateway_ha(ha_args, peer_ha, peer_private_ip, steering),
                    )
                )

            rendered = pulumi.Output.all(
                site["gateway_private_ip"],
                site["public_ip"],
                peer["public_ip"],
                site["local_cidrs"],
                peer["local_cidrs"],
                public_keys[there] if mode == IkeAuthMode.PUBKEY else None,
                psk,
                admin_cidrs,
                peer["gateway_private_ip"],
                _steering_inputs(site.get("ha")),
                *agreed,
            ).apply(render)
            bootstrap = rendered.apply(lambda r: r.bootstrap)
            digests.append(bootstrap.apply(lambda text: hashlib.sha256(text.encode()).hexdigest()))
            iked_conf[here] = rendered.apply(lambda r: r.iked_conf)
            pf_conf[here] = rendered.apply(lambda r: r.pf_conf)
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
        left, right = sites[0]["site"], sites[1]["site"]
        self.left_iked_conf, self.right_iked_conf = iked_conf[left], iked_conf[right]
        self.left_pf_conf, self.right_pf_conf = pf_conf[left], pf_conf[right]
        self.left_iked_public_key, self.right_iked_public_key = public_keys[left], public_keys[right]
        self.tunnel_status = pulumi.Output.all(*statuses).apply(lambda parts: ", ".join(parts))
        self.register_outputs(
            {
                "left_iked_conf": self.left_iked_conf,
                "right_iked_conf": self.right_iked_conf,
                "left_pf_conf": self.left_pf_conf,
                "right_pf_conf": self.right_pf_conf,
                "left_iked_public_key": self.left_iked_public_key,
                "right_iked_public_key": self.right_iked_public_key,
                "tunnel_status": self.tunnel_status,
            }
        )


#: A side's name goes into resource names, the iked policy name and outputs.
_SITE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


def _pair_problems(args: Ikev2GatewayPairArgs) -> list[str]:
    """Everything about the pair's own arguments that is known at construction."""
    problems: list[str] = []
    names = [args["left"].get("site"), args["right"].get("site")]
    for label, site in zip(("left", "right"), names, strict=True):
        if not isinstance(site, str) or not _SITE_NAME.fullmatch(site):
            problems.append(f"'{label}.site' is {site!r}: use 1-20 lowercase letters, digits and '-'")
    if names[0] == names[1]:
        problems.append(
            f"both sides are named {names[0]!r}: give one another name, e.g. "
            f"right=site.endpoint(site=\"{names[0]}-2\")"
        )
    mode = args.get("auth_mode")
    if mode is not None and mode not in tuple(IkeAuthMode):
        problems.append(f"'auth_mode' is {mode!r}; use 'pubkey' or 'psk'")
    psk = args.get("psk")
    if psk is not None and mode != IkeAuthMode.PSK:
        problems.append(
            f"'psk' is set but 'auth_mode' is {mode or 'pubkey (the default)'!r}: set auth_mode='psk' "
            "to use it, or drop the psk (it would be ignored)"
        )
    if mode == IkeAuthMode.PSK and not psk:
        problems.append("'auth_mode' is 'psk' but no 'psk' is given")
    if mode == IkeAuthMode.PSK and psk and is_plain(psk):
        problems += _psk_problems(str(psk))
    problems += [
        f"'ike_proposal' is {args.get('ike_proposal')!r}: {why}"
        for why in proposal_problems(args.get("ike_proposal") or DEFAULT_IKE_PROPOSAL, "ike")
    ]
    children = list(args.get("child_proposals") or DEFAULT_CHILD_PROPOSALS)
    problems += [
        f"'child_proposals[{i}]' is {child!r}: {why}"
        for i, child in enumerate(children)
        for why in proposal_problems(child, "child")
    ]
    left_role, right_role = str(args.get("left_role") or "active"), str(args.get("right_role") or "active")
    problems += listed(checks.roles_problem("'left_role'", left_role, "'right_role'", right_role))
    problems += listed(
        checks.dpd_problem("'dpd_interval'", _given(args.get("dpd_interval"), DEFAULT_DPD_INTERVAL))
    )
    wait = _given(args.get("tunnel_check_seconds"), DEFAULT_TUNNEL_CHECK_SECONDS)
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= 3600:
        problems.append(f"'tunnel_check_seconds' is {wait!r}; use 0 to 3600 seconds")
    problems += _ha_problems(args)
    if is_plain(args["admin_cidrs"]):
        problems += admin_problems(
            cast(Sequence[str], args["admin_cidrs"]), bool(args.get("allow_ssh_from_anywhere"))
        )
    return problems


def _ha_problems(args: Ikev2GatewayPairArgs) -> list[str]:
    """HA on both sides or on neither; one AS per cloud (the session through the tunnel is eBGP)."""
    left, right = args["left"].get("ha"), args["right"].get("ha")
    if left is None and right is None:
        return []
    if left is None or right is None:
        missing = "left" if left is None else "right"
        return [f"'{missing}.ha' is not set but the other side's is: an HA gateway's tunnel carries "
                "a BGP session, so both sides of a pair need it (use each site's endpoints())"]
    problems = [
        f"'{label}.ha.bgp_as' is {ha.get('bgp_as')!r}: use a private AS number, 1 to 4294967295"
        for label, ha in (("left", left), ("right", right))
        if not isinstance(ha.get("bgp_as"), int) or not 1 <= int(ha.get("bgp_as") or 0) <= 4294967295
    ]
    if not problems and left["bgp_as"] == right["bgp_as"]:
        problems.append(f"'left.ha.bgp_as' and 'right.ha.bgp_as' are both {left['bgp_as']}: "
                        "each cloud needs its own AS (the session between them is eBGP)")
    return problems


def _steering_inputs(ha: GatewayHaArgs | None) -> pulumi.Input[Any]:
    """The steering values of an HA gateway that may be Outputs, resolved together for render."""
    if ha is None:
        return None
    # Output.all resolves the Outputs nested in these dicts and lists (Output.from_input).
    return {
        "route_server_addresses": ha.get("route_server_addresses"),
        "route_tables": ha.get("route_tables"),
    }


def _gateway_ha(
    ha: GatewayHaArgs | None, peer: GatewayHaArgs | None, peer_private_ip: str, steering: Any
) -> GatewayHa | None:
    """What ``openbsd`` renders bgpd.conf (and the steering's files) from, for one HA gateway."""
    if ha is None or peer is None:
        return None
    addresses = list(steering["route_server_addresses"] or [])
    route_servers = None
    if addresses:
        route_servers = RouteServers(
            addresses=addresses,
            remote_as=int(ha.get("route_server_as") or 0),
            standby=bool(ha["standby"]),
        )
    tables = steering["route_tables"]
    route_tables = None
    if tables is not None:
        # The other cloud's networks and the probe port are filled in by render_gateway.
        route_tables = RouteTableSteering(
            region=str(tables["region"]),
            route_table_ids=list(tables["route_table_ids"]),
            partner_private_ip=str(tables["partner_private_ip"]),
            standby=bool(ha["standby"]),
        )
    return GatewayHa(
        local_as=int(ha["bgp_as"]),
        peer_as=int(peer["bgp_as"]),
        peer_private_ip=peer_private_ip,
        route_servers=route_servers,
        probe_port=ha.get("probe_port"),
        route_tables=route_tables,
    )


def _psk_problems(psk: str) -> list[str]:
    why = psk_problem_text(psk)
    return [f"'psk' {why}"] if why else []


def _check_same_networks(
    component: str, here: GatewayEndpointArgs, there: GatewayEndpointArgs
) -> pulumi.Input[Any]:
    """A side routes exactly the peer's networks to its gateway (when it says what it routes)."""
    routed = here.get("remote_cidrs")
    if routed is None:
        return None
    label, peer_label = f"'{here['site']}.remote_cidrs'", f"'{there['site']}.local_cidrs'"

    def check(values: list[Any]) -> list[str]:
        return listed(checks.same_networks_problem(label, values[0], peer_label, values[1]))

    return checked(component, [routed, there["local_cidrs"]], check)


def _given(value: Any, default: Any) -> Any:
    """``value`` unless it was left out (None); unlike ``value or default``, 0 and False count."""
    return default if value is None else value


def _status(site: str, stdout: pulumi.Output[str]) -> pulumi.Output[str]:
    """``"<site>: up"`` from the check script's first line (``tunnel: up``/``tunnel: down``)."""

    def first_line(text: str | None) -> str:
        lines = (text or "").strip().splitlines()
        return f"{site}: {lines[0].removeprefix('tunnel: ') if lines else 'no answer'}"

    return stdout.apply(first_line)
