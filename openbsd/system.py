"""Small OpenBSD system files a gateway needs besides iked and pf."""

from __future__ import annotations

SYSCTL_CONF_PATH = "/etc/sysctl.conf"
#: A gateway forwards between its workload networks and the tunnel.
SYSCTL_LINES: tuple[str, ...] = ("net.inet.ip.forwarding=1",)
#: RFC 1323 (TCP timestamps and window scaling) off for the gateway's own TCP. Microsoft's
#: load-balancer-custom-probe-overview: "You should assume health probes fail when TCP
#: timestamps are enabled". OpenBSD has them on: the sysctl is net.inet.tcp.rfc1323
#: (sys/netinet/tcp_var.h TCPCTL_RFC1323, "enable/disable RFC1323 timestamps/scaling";
#: tcp_usrreq.c bounds it to 0..1, tcp_do_rfc1323 defaults to 1). It touches only connections
#: the gateway itself ends (the probe, BGP, ssh), not the traffic it forwards.
DISABLE_TCP_TIMESTAMPS = "net.inet.tcp.rfc1323=0"

HOSTNAME_ENC0_PATH = "/etc/hostname.enc0"


def render_sysctl_lines(disable_tcp_timestamps: bool = False) -> tuple[str, ...]:
    """Lines the bootstrap makes sure ``/etc/sysctl.conf`` holds (and applies at once);
    ``disable_tcp_timestamps`` for a gateway behind the Azure load balancer's health probe."""
    return SYSCTL_LINES + ((DISABLE_TCP_TIMESTAMPS,) if disable_tcp_timestamps else ())


def render_hostname_enc0() -> str:
    """``/etc/hostname.enc0``: enc0 up at boot, so pf and tcpdump see tunnel traffic there."""
    return "up\n"
