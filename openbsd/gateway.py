"""Everything one gateway receives, rendered from the plain values of both sides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

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
    HTTPD_CONF_PATH,
    IFSTATED_CONF_PATH,
    PROBE_CONF_MODE,
    ProbeResponder,
    probe_directory,
    render_httpd_conf,
    render_ifstated_conf,
)
from .system import HOSTNAME_ENC0_PATH, render_hostname_enc0, render_sysctl_lines

_PEM_BEGIN = "-----BEGIN PUBLIC KEY-----"
_PEM_END = "-----END PUBLIC KEY-----"


@dataclass(frozen=True)
class GatewayHa:
    """HA mode (issue 13): this gateway's BGP session, through its tunnel, with the other cloud's
    gateway of its pair (``peer_private_ip``), and how its own cloud steers by that session: AWS
    gateways re-announce to ``route_servers``, Azure gateways answer the internal load
    balancer's health probe on ``probe_port`` (``openbsd/probe.py``) while the session is up."""

    local_as: int
    peer_as: int
    peer_private_ip: str
    holdtime: int = MIN_HOLDTIME
    route_servers: RouteServers | None = None
    probe_port: int | None = None


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
    if ha.route_servers is not None and ha.probe_port is not None:
        raise ValueError("an HA gateway is steered by route servers (AWS) or by the load balancer's "
                         "probe (Azure), not both: set route_servers or probe_port")
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
    return files, [probe_directory(probe)]


def render_gateway(spec: GatewaySpec) -> RenderedGateway:
    """Render iked.conf, pf.conf, the peer's key file and the bootstrap for one gateway; in HA
    mode also bgpd.conf and, with a probe port, the probe responder's files."""
    ha = spec.ha
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
    sysctl_lines = render_sysctl_lines()
    return RenderedGateway(
        iked_conf=iked_conf,
        pf_conf=pf_conf,
        files=tuple(files),
        sysctl_lines=sysctl_lines,
        bootstrap=render_bootstrap(files, sysctl_lines, directories),
    )
