"""The Azure probe responder (ifstated.conf, httpd.conf): no parser for either exists on Linux
(Debian packages neither daemon), so the text is pinned here against ifstated.conf(5) and its
parse.y, and httpd.conf(5); only a real OpenBSD host proves the daemons take it."""

from __future__ import annotations

import re

import pytest

from cross_cloud_vpn.openbsd import (
    PfGateway,
    ProbeResponder,
    probe_file,
    probe_path,
    render_httpd_conf,
    render_ifstated_conf,
    render_pf_conf,
)
from cross_cloud_vpn.openbsd.probe import HTTPD_CHROOT

B1 = ProbeResponder(private_ip="10.20.0.10", bgp_peer_private_ip="10.10.0.10")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_ifstated_asks_bgpctl_for_the_peer_session_every_second() -> None:
    assert "peer_established = '\"bgpctl show neighbor 10.10.0.10 | grep -q Established\" every 1'" in \
        _lines(render_ifstated_conf(B1))


def test_ifstated_starts_unhealthy_so_a_stale_file_never_answers() -> None:
    lines = _lines(render_ifstated_conf(B1))
    assert lines.index("init-state unhealthy") < lines.index("state healthy {")


def test_ifstated_file_exists_exactly_while_the_session_is_established() -> None:
    text = render_ifstated_conf(B1)
    healthy = text[text.index("state healthy {"):text.index("state unhealthy {")]
    unhealthy = text[text.index("state unhealthy {"):]
    assert _lines(healthy) == ["state healthy {", "init {", 'run "touch /var/www/htdocs/ilb/up"', "}",
                               "if ! $peer_established", "set-state unhealthy", "}"]
    assert _lines(unhealthy) == ["state unhealthy {", "init {", 'run "rm -f /var/www/htdocs/ilb/up"', "}",
                                 "if $peer_established", "set-state healthy", "}"]


def test_ifstated_text_fits_its_grammar() -> None:
    """parse.y: `up`, `down`, `unknown`, `link` are keywords (not state names); every action in a
    block ends with a newline before `}` (action_l: action nl); the file ends with one."""
    text = render_ifstated_conf(B1)
    names = re.findall(r"^(?:state|init-state)\s+(\S+)|set-state\s+(\S+)", text, flags=re.M)
    used = {n for pair in names for n in pair if n}
    assert used == {"healthy", "unhealthy"}
    assert not used & {"up", "down", "unknown", "link", "init", "state", "run", "every", "if"}
    assert not re.search(r"\{[^\n]*\S[^\n]*\}", text), "a one-line { action } block does not parse"
    assert text.count("{") == text.count("}") and text.endswith("}\n")


def test_httpd_listens_only_on_the_private_ip_and_probe_port_and_serves_the_probe_directory() -> None:
    assert _lines(render_httpd_conf(B1)) == [
        'server "ilb-probe" {', "listen on 10.20.0.10 port 8080", 'root "/htdocs/ilb"', "no log", "}",
    ]
    assert render_httpd_conf(B1).endswith("}\n")


def test_the_file_ifstated_keeps_is_the_one_the_probe_path_serves() -> None:
    assert probe_path(B1) == "/up"
    assert probe_file(B1) == "/var/www/htdocs/ilb/up" == f"{HTTPD_CHROOT}{B1.root}{probe_path(B1)}"
    assert f'run "touch {probe_file(B1)}"' in render_ifstated_conf(B1)


def test_pf_passes_the_probe_to_the_port_httpd_listens_on() -> None:
    b1 = ProbeResponder(private_ip="10.20.0.10", bgp_peer_private_ip="10.10.0.10", port=8443)
    pf = render_pf_conf(PfGateway(private_ip=b1.private_ip, peer_public_ip="203.0.113.20",
                                  local_cidrs=["10.20.1.0/24"], remote_cidrs=["10.10.1.0/24"],
                                  admin_cidrs=["192.0.2.0/24"], bgp_peer_private_ip=b1.bgp_peer_private_ip,
                                  probe_port=b1.port))
    assert "pass in on egress inet proto tcp from $lb_probe to $gw port 8443" in pf
    assert "listen on 10.20.0.10 port 8443" in render_httpd_conf(b1)


def test_comments_cite_the_manuals_and_say_no_linux_parser_exists() -> None:
    from cross_cloud_vpn.openbsd import probe

    assert "ifstated.conf(5)" in render_ifstated_conf(B1) and "httpd.conf(5)" in render_httpd_conf(B1)
    assert probe.__doc__ is not None and "no parser for either" in probe.__doc__


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"private_ip": "10.20.0.300"}, "private_ip"),
        ({"bgp_peer_private_ip": "b1"}, "bgp_peer_private_ip"),
        ({"bgp_peer_private_ip": "10.20.0.10"}, "same address"),
        ({"port": 0}, "1..65535"),
        ({"port": 65536}, "1..65535"),
        ({"port": 22}, "taken"),
        ({"port": 179}, "taken"),
        ({"port": 4500}, "taken"),
        ({"root": "htdocs/ilb"}, "absolute"),
        ({"root": "/"}, "absolute"),
        ({"root": "/htdocs/../etc"}, "absolute"),
        ({"root": '/htdocs/"x'}, "absolute"),
        ({"root": "/htdocs/a b"}, "absolute"),
        ({"file_name": "a/b"}, "plain name"),
        ({"file_name": ""}, "plain name"),
        ({"file_name": "up;reboot"}, "plain name"),
        ({"check_interval": 0}, "1..5"),
        ({"check_interval": 6}, "1..5"),
    ],
)
def test_probe_refuses_bad_inputs(change: dict[str, object], message: str) -> None:
    bad = ProbeResponder(**{**B1.__dict__, **change})  # type: ignore[arg-type]
    for render in (render_ifstated_conf, render_httpd_conf, probe_path):
        with pytest.raises(ValueError, match=message):
            render(bad)
