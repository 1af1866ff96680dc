"""OpenBSD configuration text for a cross-cloud-vpn gateway.

Pure functions of plain values: nothing here imports Pulumi, so each renderer is tested
against the real parsers (``iked -n``) and reused by the local rehearsal.
"""

from .bgpd import MIN_HOLDTIME, BgpdGateway, RouteServers, render_bgpd_conf
from .bootstrap import (
    REMOTE_SHELL,
    ConfigFile,
    ParsedBootstrap,
    parse_bootstrap,
    render_bootstrap,
    render_read_pubkey_script,
    render_tunnel_check_script,
)
from .gateway import GatewayHa, GatewaySpec, RenderedGateway, normalize_public_key, render_gateway
from .iked import (
    DEFAULT_CHILD_PROPOSALS,
    DEFAULT_DPD_INTERVAL,
    DEFAULT_IKE_PROPOSAL,
    MIN_PSK_LENGTH,
    IkedGateway,
    PskAuth,
    PubkeyAuth,
    Role,
    peer_pubkey_path,
    proposal_problems,
    psk_problem_text,
    render_iked_conf,
)
from .pf import PfGateway, render_pf_conf
from .probe import (
    AZURE_PROBE_SOURCE,
    ProbeResponder,
    bgp_established_command,
    probe_directory,
    probe_file,
    probe_path,
    render_httpd_conf,
    render_ifstated_conf,
)
from .steer import (
    STEER_DAEMON,
    STEER_RC_PATH,
    STEER_SCRIPT_PATH,
    RouteTableSteering,
    render_steer_rc,
    render_steer_script,
)

__all__ = [
    "AZURE_PROBE_SOURCE",
    "DEFAULT_CHILD_PROPOSALS",
    "DEFAULT_DPD_INTERVAL",
    "DEFAULT_IKE_PROPOSAL",
    "MIN_HOLDTIME",
    "MIN_PSK_LENGTH",
    "REMOTE_SHELL",
    "STEER_DAEMON",
    "STEER_RC_PATH",
    "STEER_SCRIPT_PATH",
    "BgpdGateway",
    "ConfigFile",
    "GatewayHa",
    "GatewaySpec",
    "IkedGateway",
    "ParsedBootstrap",
    "PfGateway",
    "ProbeResponder",
    "PskAuth",
    "PubkeyAuth",
    "RenderedGateway",
    "Role",
    "RouteServers",
    "RouteTableSteering",
    "bgp_established_command",
    "normalize_public_key",
    "parse_bootstrap",
    "peer_pubkey_path",
    "probe_directory",
    "probe_file",
    "probe_path",
    "proposal_problems",
    "psk_problem_text",
    "render_bgpd_conf",
    "render_bootstrap",
    "render_gateway",
    "render_httpd_conf",
    "render_ifstated_conf",
    "render_iked_conf",
    "render_pf_conf",
    "render_read_pubkey_script",
    "render_steer_rc",
    "render_steer_script",
    "render_tunnel_check_script",
]
