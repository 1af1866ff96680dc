"""The Azure health-probe responder of an HA gateway: ``ifstated.conf`` and ``httpd.conf``.

In HA mode the Azure gateways (B1, B2) sit behind an internal Standard Load Balancer (HA-ports
rule) that is the workload subnets' next hop. The balancer sends a flow only to a gateway whose
health probe answers (HTTP 200), so a gateway must answer exactly while its tunnel works, i.e.
while its BGP session with the AWS gateway of its pair, which runs through that tunnel
(``openbsd/bgpd.py``), is Established (research/ha.md section 2.3):

- ifstated(8) asks ``bgpctl show neighbor <peer> | grep -q Established`` every second and, on a
  change, creates or removes one empty file;
- httpd(8) listens on the gateway's private IP and the probe port and serves that file's
  directory: ``GET /up`` is 200 while the file exists, 404 while it does not.

Syntax checked against the manual pages and parsers of OpenBSD's tree (usr.sbin/ifstated/
ifstated.conf.5 and parse.y rev 1.56; usr.sbin/httpd/httpd.conf.5): **no parser for either
file exists on Linux** (Debian packages neither daemon), so ``tests/test_openbsd_probe.py`` pins
the rendered text only; only a real OpenBSD host proves that ifstated and httpd take it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

IFSTATED_CONF_PATH = "/etc/ifstated.conf"
HTTPD_CONF_PATH = "/etc/httpd.conf"
#: Neither file holds a secret; like every config this project installs, root-only.
PROBE_CONF_MODE = 0o600
#: Where every Azure health probe comes from (research/ha.md section 1b; Microsoft's
#: load-balancer-custom-probe-overview: the AzureLoadBalancer service tag's address).
AZURE_PROBE_SOURCE = "168.63.129.16"
DEFAULT_PROBE_PORT = 8080
#: httpd.conf(5): httpd chroots to /var/www by default, and `root` is a path inside it.
HTTPD_CHROOT = "/var/www"
DEFAULT_PROBE_ROOT = "/htdocs/ilb"
DEFAULT_PROBE_FILE = "up"
#: Seconds between two runs of the test (ifstated.conf(5) `every`; the LB probes every 5 s).
DEFAULT_CHECK_INTERVAL = 1
#: Ports the gateway itself serves or uses: ssh, bgp, isakmp, ipsec-nat-t.
_TAKEN_PORTS = frozenset({22, 179, 500, 4500})
_PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ProbeResponder:
    """Everything one Azure HA gateway's probe responder depends on."""

    private_ip: str
    bgp_peer_private_ip: str
    port: int = DEFAULT_PROBE_PORT
    #: httpd's document root, inside its chroot (``HTTPD_CHROOT``).
    root: str = DEFAULT_PROBE_ROOT
    file_name: str = DEFAULT_PROBE_FILE
    check_interval: int = DEFAULT_CHECK_INTERVAL


def check_probe_port(port: int) -> None:
    """Refuse a port outside 1..65535 or one the gateway already uses (shared with pf.py)."""
    if not 1 <= port <= 65535:
        raise ValueError(f"probe port {port} is outside 1..65535")
    if port in _TAKEN_PORTS:
        raise ValueError(f"probe port {port} is taken on the gateway (ssh, bgp, IKE, NAT-T); "
                         f"use another, e.g. {DEFAULT_PROBE_PORT}")


def _check(p: ProbeResponder) -> None:
    for label, address in (("private_ip", p.private_ip), ("bgp_peer_private_ip", p.bgp_peer_private_ip)):
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise ValueError(f"{label} {address!r} is not an IPv4 address") from None
    if ipaddress.IPv4Address(p.private_ip) == ipaddress.IPv4Address(p.bgp_peer_private_ip):
        raise ValueError("private_ip and bgp_peer_private_ip are the same address")
    check_probe_port(p.port)
    # The paths go inside double quotes of both files and into sh -c: plain names only.
    parts = p.root.split("/")
    if not p.root.startswith("/") or p.root == "/" or not all(_PATH_PART.fullmatch(x) for x in parts[1:]):
        raise ValueError(f"root {p.root!r} must be an absolute path inside httpd's chroot ({HTTPD_CHROOT})"
                         f" of letters, digits, '.', '_' and '-', e.g. {DEFAULT_PROBE_ROOT}")
    if not _PATH_PART.fullmatch(p.file_name):
        raise ValueError(f"file_name {p.file_name!r} must be one plain name, e.g. {DEFAULT_PROBE_FILE}")
    if not 1 <= p.check_interval <= 5:
        raise ValueError(f"check_interval {p.check_interval} is outside 1..5 s (the probe comes every 5 s)")


def bgp_established_command(peer_private_ip: str) -> str:
    """The shell test that is true while the BGP session with ``peer_private_ip`` is up:
    bgpctl(8) ``show neighbor`` prints ``BGP state = Established`` then (research/ha.md 2.3).
    The probe responder (ifstated) and the AWS route-table steering (``openbsd/steer.py``) ask
    the very same question."""
    ipaddress.IPv4Address(peer_private_ip)
    return f"bgpctl show neighbor {peer_private_ip} | grep -q Established"


def probe_path(p: ProbeResponder) -> str:
    """The request path the load balancer's HTTP probe must ask for (``ProbeArgs.request_path``)."""
    _check(p)
    return f"/{p.file_name}"


def probe_directory(p: ProbeResponder) -> str:
    """httpd's document root on the host: the bootstrap makes it (0755, httpd serves as www)."""
    _check(p)
    return f"{HTTPD_CHROOT}{p.root}"


def probe_file(p: ProbeResponder) -> str:
    """The file on the host whose existence means healthy (in :func:`probe_directory`)."""
    return f"{probe_directory(p)}/{p.file_name}"


def render_ifstated_conf(p: ProbeResponder) -> str:
    """The whole ``/etc/ifstated.conf``: the file exists exactly while the BGP session is up."""
    path = probe_file(p)
    return "\n".join(
        [
            "# Rendered by cross-cloud-vpn; edits are overwritten on the next `pulumi up`.",
            "# The Azure load balancer's probe gets 200 from httpd only while the file below exists,",
            "# and it exists only while the BGP session through this gateway's tunnel is Established.",
            "# ifstated.conf(5) (parse.y): `up` and `down` are keywords, so they cannot name a state.",
            f"peer_established = '\"{bgp_established_command(p.bgp_peer_private_ip)}\""
            f" every {p.check_interval}'",
            "# Start unhealthy: ifstated runs the initial state's init block at start (ifstated.c",
            "# load_config), so a file left from before a restart never answers for a dead tunnel.",
            "init-state unhealthy",
            "",
            "state healthy {",
            "\tinit {",
            f'\t\trun "touch {path}"',
            "\t}",
            "\tif ! $peer_established",
            "\t\tset-state unhealthy",
            "}",
            "",
            "state unhealthy {",
            "\tinit {",
            f'\t\trun "rm -f {path}"',
            "\t}",
            "\tif $peer_established",
            "\t\tset-state healthy",
            "}",
            "",
        ]
    )


def render_httpd_conf(p: ProbeResponder) -> str:
    """The whole ``/etc/httpd.conf``: one server, on the private IP and the probe port only."""
    _check(p)
    return "\n".join(
        [
            "# Rendered by cross-cloud-vpn; edits are overwritten on the next `pulumi up`.",
            "# Answers the Azure load balancer's health probe: GET /" + p.file_name + " is 200 while",
            "# ifstated keeps the file (BGP through the tunnel Established), 404 otherwise.",
            "# httpd.conf(5): `root` is a path inside the chroot (" + HTTPD_CHROOT + ").",
            "# A probe every 5 s from each probing instance: nothing worth a log line (no log).",
            'server "ilb-probe" {',
            f"\tlisten on {p.private_ip} port {p.port}",
            f'\troot "{p.root}"',
            "\tno log",
            "}",
            "",
        ]
    )
