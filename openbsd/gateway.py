"""Everything one gateway receives, rendered from the plain values of both sides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .bgpd import (
    BGPD_CONF_MODE,
    BGPD_CONF_PATH,
    MIN_HOLDTIME,
    BgpdGateway,
    RouteServers,
    render_bgpd_conf,
)
from .bootstrap import ConfigFile, render_bootstrap
from .iked import (
    DEFAULT_CHILD_PROPOSALS,
    DEFAULT_DPD_INTERVAL,
    DEFAULT_IKE_PROPOSAL,
    IKED_CONF_MODE,
    IKED_CONF_PATH,
    IkedGateway,
    PskAuth,
    PubkeyAuth,
    Role,
    peer_pubkey_path,
    render_iked_conf,
)
from .pf import PF_CONF_MODE, PF_CONF_PATH, PfGateway, render_pf_conf
from .probe import (
    AZURE_PROBE_SOURCE,
    HTTPD_CONF_PATH,
    IFSTATED_CONF_PATH,
    PROBE_CONF_MODE,
    ProbeResponder,
    probe_directory,
    probe_path,
    render_httpd_conf,
    render_ifstated_conf,
)
from .steer import (
    STEER_DAEMON,
    STEER_RC_MODE,
    STEER_RC_PATH,
    STEER_SCRIPT_MODE,
    STEER_SCRIPT_PATH,
    RouteTableSteering,
    render_steer_rc,
    render_steer_script,
)
from .system import HOSTNAME_ENC0_PATH, render_hostname_enc0, render_sysctl_lines

_PEM_BEGIN = "-----BEGIN PUBLIC KEY-----"
_PEM_END = "-----END PUBLIC KEY-----"


@dataclass(frozen=True)
class GatewayHa:
    """HA mode (issue 13): this gateway's BGP session, through its tunnel, with the other cloud's
    gateway of its pair (``peer_private_ip``), and how its own cloud steers by that session:

    - AWS, route servers: the gateway re-announces to ``route_servers``;
    - AWS, route tables ($0): ``route_tables`` set (with ``probe_port``): the gateway runs the
      steering loop (``openbsd/steer.py``) and, so that its partner can ask about it, the probe
      responder on ``probe_port``, which pf opens to the partner gateway only;
    - Azure: ``probe_port`` alone: the gateway answers the internal load balancer's health probe
      (``openbsd/probe.py``) while the session is up.
    """

    local_as: int
    peer_as: int
    peer_private_ip: str
    holdtime: int = MIN_HOLDTIME
    route_servers: RouteServers | None = None
    probe_port: int | None = None
    route_tables: RouteTableSteering | None = None


@dataclass(frozen=True)
class GatewaySpec:
    """One gateway, described by its own values and its peer's.

    ``peer_public_key`` is the PEM the peer gateway printed from ``/etc/iked/local.pub``
    (pubkey mode); it is ignored in PSK mode. ``ha`` (default None: one gateway per side, the
    files exactly as before) adds bgpd.conf, the BGP host flow and HA pf.conf, and with a probe
    port the probe responder.
    """

    site: str
    peer_site: str
    private_ip: str
    public_ip: str
    peer_public_ip: str
    local_cidrs: Sequence[str]
    remote_cidrs: Sequence[str]
    admin_cidrs: Sequence[str]
    auth: PubkeyAuth | PskAuth
    peer_public_key: str | None = field(default=None, repr=False)
    role: Role = "active"
    ike_proposal: str = DEFAULT_IKE_PROPOSAL
    child_proposals: Sequence[str] = DEFAULT_CHILD_PROPOSALS
    dpd_interval: int = DEFAULT_DPD_INTERVAL
    ha: GatewayHa | None = None


@dataclass(frozen=True)
class RenderedGateway:
    """The text pushed to one gateway. ``bootstrap`` holds every file, so it is what runs."""

    iked_conf: str = field(repr=False)
    pf_conf: str
    files: tuple[ConfigFile, ...]
    sysctl_lines: tuple[str, ...]
    bootstrap: str = field(repr=False)


def normalize_public_key(pem: str, site: str) -> str:
    """The peer's PEM public key, trimmed; a clear error when it is not one."""
    text = pem.strip()
    if not (text.startswith(_PEM_BEGIN) and text.endswith(_PEM_END)):
        raise ValueError(
            f"the {site} gateway's /etc/iked/local.pub is not a PEM public key "
            f"(it starts with {text[:30]!r}); check iked's key on that host"
        )
    return text + "\n"


def _ha_files(spec: GatewaySpec, ha: GatewayHa) -> tuple[list[ConfigFile], list[str]]:
    """bgpd.conf, and on a gateway that answers a probe ifstated.conf, httpd.conf and the
    directory httpd serves; each checked by its daemon's own parser before anything is installed:
    bgpd(8) and ifstated(8) `-n`: "Configtest mode"; httpd(8) `-n`: "Check that the configuration
    is valid, but don't start any servers" (man.openbsd.org)."""
    _check_steering(ha)
    bgpd_conf = render_bgpd_conf(
        BgpdGateway(
            local_as=ha.local_as,
            local_private_ip=spec.private_ip,
            peer_as=ha.peer_as,
            peer_private_ip=ha.peer_private_ip,
            local_cidrs=spec.local_cidrs,
            remote_cidrs=spec.remote_cidrs,
            peer_description=f"{spec.peer_site} gateway over the tunnel",
            holdtime=ha.holdtime,
            route_servers=ha.route_servers,
        )
    )
    # bgpctl(8) `reload`: "Reload the configuration file". A restart would drop every session,
    # and with them this gateway from the route servers or the probe; a reload keeps bgpd running.
    files = [ConfigFile(BGPD_CONF_PATH, bgpd_conf, BGPD_CONF_MODE, check="bgpd -n -f {path}",
                        restarts="bgpd", reload="bgpctl reload")]
    if ha.probe_port is None:
        return files, []
    probe = ProbeResponder(private_ip=spec.private_ip, bgp_peer_private_ip=ha.peer_private_ip,
                           port=ha.probe_port)
    files += [
        ConfigFile(IFSTATED_CONF_PATH, render_ifstated_conf(probe), PROBE_CONF_MODE,
                   check="ifstated -n -f {path}", restarts="ifstated"),
        ConfigFile(HTTPD_CONF_PATH, render_httpd_conf(probe), PROBE_CONF_MODE,
                   check="httpd -n -f {path}", restarts="httpd"),
    ]
    steering = route_table_steering(spec, ha)
    if steering is not None:
        # sh -n: "Read commands but do not execute them" (ksh(1), OpenBSD's sh): a syntax check.
        # A new script or rc.d file restarts the loop (rcctl restart); rcctl enable adds the
        # non-base daemon to pkg_scripts (rcctl(8)), so it starts at boot after bgpd.
        files += [
            ConfigFile(STEER_SCRIPT_PATH,
                       render_steer_script(steering, ha.peer_private_ip, probe_path(probe)),
                       STEER_SCRIPT_MODE, check="sh -n {path}", restarts=STEER_DAEMON),
            ConfigFile(STEER_RC_PATH, render_steer_rc(), STEER_RC_MODE, check="sh -n {path}",
                       restarts=STEER_DAEMON),
        ]
    return files, [probe_directory(probe)]


def _check_steering(ha: GatewayHa) -> None:
    """Refuse the combinations that contradict each other, each with what to set instead."""
    if ha.route_servers is not None and ha.route_tables is not None:
        raise ValueError("an AWS HA gateway is steered by route servers or by its own route table "
                         "writes, not both: set route_servers or route_tables")
    if ha.route_servers is not None and ha.probe_port is not None:
        raise ValueError("an HA gateway is steered by route servers (AWS) or by the load balancer's "
                         "probe (Azure), not both: set route_servers or probe_port")
    if ha.route_tables is not None:
        if ha.probe_port is None:
            raise ValueError("route-table steering needs probe_port: the standby asks its partner's "
                             "probe responder on that port, and this gateway runs one too")
        if ha.route_tables.probe_port not in (None, ha.probe_port):
            raise ValueError(f"route_tables.probe_port {ha.route_tables.probe_port} differs from "
                             f"probe_port {ha.probe_port}: both gateways listen on one port; set it once")


def route_table_steering(spec: GatewaySpec, ha: GatewayHa) -> RouteTableSteering | None:
    """The gateway's route-table steering with its blanks filled: the networks it steers are the
    other cloud's (``remote_cidrs``), the port it probes is the one it serves (``probe_port``)."""
    steering = ha.route_tables
    if steering is None:
        return None
    _check_steering(ha)
    if steering.destination_cidrs and list(steering.destination_cidrs) != list(spec.remote_cidrs):
        raise ValueError(f"route_tables.destination_cidrs {list(steering.destination_cidrs)} differ from "
                         f"remote_cidrs {list(spec.remote_cidrs)}: the steered routes are the other cloud's")
    if steering.partner_private_ip in (spec.private_ip, ha.peer_private_ip):
        raise ValueError("route_tables.partner_private_ip must be the other AWS gateway of this side, "
                         "not this gateway nor its tunnel peer")
    return replace(steering, destination_cidrs=tuple(spec.remote_cidrs), probe_port=ha.probe_port)


def render_gateway(spec: GatewaySpec) -> RenderedGateway:
    """Render iked.conf, pf.conf, the peer's key file and the bootstrap for one gateway; in HA
    mode also bgpd.conf, with a probe port the probe responder's files, and with route tables
    the steering script and its rc.d script."""
    ha = spec.ha
    if ha is not None:
        _check_steering(ha)
        route_table_steering(spec, ha)  # refuse a contradictory steering before rendering anything
    bgp_peer = ha.peer_private_ip if ha is not None else None
    iked_conf = render_iked_conf(
        IkedGateway(
            policy_name=f"{spec.site}-to-{spec.peer_site}",
            local_private_ip=spec.private_ip,
            local_public_ip=spec.public_ip,
            peer_public_ip=spec.peer_public_ip,
            local_cidrs=spec.local_cidrs,
            remote_cidrs=spec.remote_cidrs,
            auth=spec.auth,
            role=spec.role,
            ike_proposal=spec.ike_proposal,
            child_proposals=spec.child_proposals,
            dpd_interval=spec.dpd_interval,
            bgp_peer_private_ip=bgp_peer,
        )
    )
    pf_conf = render_pf_conf(
        PfGateway(
            private_ip=spec.private_ip,
            peer_public_ip=spec.peer_public_ip,
            local_cidrs=spec.local_cidrs,
            remote_cidrs=spec.remote_cidrs,
            admin_cidrs=spec.admin_cidrs,
            bgp_peer_private_ip=bgp_peer,
            probe_port=ha.probe_port if ha is not None else None,
            probe_source=(ha.route_tables.partner_private_ip if ha is not None and ha.route_tables
                          is not None else AZURE_PROBE_SOURCE),
        )
    )
    files = [
        ConfigFile(IKED_CONF_PATH, iked_conf, IKED_CONF_MODE, check="iked -n -f {path}", restarts="iked")
    ]
    if isinstance(spec.auth, PubkeyAuth):
        if spec.peer_public_key is None:
            raise ValueError(f"pubkey mode needs the {spec.peer_site} gateway's public key")
        # No restart for a new peer key: iked reads this file at each authentication
        # (sbin/iked/ca.c ca_validate_pubkey() opens it by the peer's ID every time).
        files.append(
            ConfigFile(
                peer_pubkey_path(spec.peer_public_ip),
                normalize_public_key(spec.peer_public_key, spec.peer_site),
                0o644,
            )
        )
    files.append(
        ConfigFile(PF_CONF_PATH, pf_conf, PF_CONF_MODE, check="pfctl -nf {path}", load="pfctl -f {path}")
    )
    files.append(ConfigFile(HOSTNAME_ENC0_PATH, render_hostname_enc0(), 0o640))
    directories: list[str] = []
    if ha is not None:
        ha_files, directories = _ha_files(spec, ha)
        files += ha_files
    # An Azure HA gateway answers the load balancer's probe: TCP timestamps off (system.py).
    azure_probe = ha is not None and ha.probe_port is not None and ha.route_tables is None
    sysctl_lines = render_sysctl_lines(disable_tcp_timestamps=azure_probe)
    return RenderedGateway(
        iked_conf=iked_conf,
        pf_conf=pf_conf,
        files=tuple(files),
        sysctl_lines=sysctl_lines,
        bootstrap=render_bootstrap(files, sysctl_lines, directories),
    )
