"""Small OpenBSD system files a gateway needs besides iked and pf."""

from __future__ import annotations

SYSCTL_CONF_PATH = "/etc/sysctl.conf"
#: A gateway forwards between its workload networks and the tunnel.
SYSCTL_LINES: tuple[str, ...] = ("net.inet.ip.forwarding=1",)

HOSTNAME_ENC0_PATH = "/etc/hostname.enc0"


def render_sysctl_lines() -> tuple[str, ...]:
    """Lines the bootstrap makes sure ``/etc/sysctl.conf`` holds (and applies at once)."""
    return SYSCTL_LINES


def render_hostname_enc0() -> str:
    """``/etc/hostname.enc0``: enc0 up at boot, so pf and tcpdump see tunnel traffic there."""
    return "up\n"
