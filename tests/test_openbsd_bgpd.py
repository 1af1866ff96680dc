"""HA mode's bgpd.conf and iked.conf host flow, checked with the real parsers (bgpd -n, iked -n).

Debian's `openbgpd` (7.7 in Debian 12) parses OpenBSD's bgpd.conf grammar; the version is read
from `bgpd -V` and printed with a refusal, never pinned.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cross_cloud_vpn.openbsd import (
    MIN_HOLDTIME,
    BgpdGateway,
    IkedGateway,
    PubkeyAuth,
    RouteServers,
    render_bgpd_conf,
    render_iked_conf,
)

BGPD = shutil.which("bgpd", path="/usr/sbin:/usr/bin") or "/usr/sbin/bgpd"
IKED = shutil.which("iked", path="/usr/sbin:/usr/bin") or "/usr/sbin/iked"
needs_bgpd = pytest.mark.skipif(
    not Path(BGPD).exists(),
    reason="Debian package openbgpd is not installed (apt-get install --no-install-recommends openbgpd)",
)
needs_iked = pytest.mark.skipif(not Path(IKED).exists(), reason="Debian package openiked is not installed")

AWS_NETS = ["10.10.1.0/24", "10.10.2.0/24", "10.10.3.0/24"]
AZURE_NETS = ["10.20.1.0/24", "10.20.2.0/24", "10.20.3.0/24"]
ENDPOINTS = ["10.10.0.230", "10.10.0.231"]


def bgpd_version() -> str:
    p = subprocess.run([BGPD, "-V"], capture_output=True, text=True, timeout=30)
    return (p.stdout + p.stderr).strip() or "unknown version"


def bgpd_check(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bgpd.conf"
    path.write_text(text)
    path.chmod(0o600)
    return subprocess.run([BGPD, "-nv", "-f", str(path)], capture_output=True, text=True, timeout=30)


def loaded_lines(text: str, tmp_path: Path) -> list[str]:
    """What `bgpd -nv` prints back, a line each, without quotes, braces or repeated blanks (a
    block's closing brace leaves an empty line): the same across OpenBGPD versions that quote
    or brace a little differently."""
    result = bgpd_check(text, tmp_path)
    assert result.returncode == 0, f"{bgpd_version()}: {result.stderr}"
    strip = str.maketrans("", "", '"{}')
    return [" ".join(line.translate(strip).split()) for line in result.stdout.splitlines()]


def aws_gateway(n: int, cidrs: int = 1, route_servers: bool = True) -> BgpdGateway:
    """A1 (n=1, primary) or A2 (n=2, standby), as the research's sample files lay them out."""
    return BgpdGateway(
        local_as=65010,
        local_private_ip=f"10.10.0.{9 + n}",
        peer_as=65020,
        peer_private_ip=f"10.20.0.{9 + n}",
        local_cidrs=AWS_NETS[:cidrs],
        remote_cidrs=AZURE_NETS[:cidrs],
        peer_description=f"B{n} over the tunnel",
        route_servers=RouteServers(ENDPOINTS, remote_as=65000, standby=n == 2) if route_servers else None,
    )


def azure_gateway(n: int, cidrs: int = 1) -> BgpdGateway:
    return BgpdGateway(
        local_as=65020,
        local_private_ip=f"10.20.0.{9 + n}",
        peer_as=65010,
        peer_private_ip=f"10.10.0.{9 + n}",
        local_cidrs=AZURE_NETS[:cidrs],
        remote_cidrs=AWS_NETS[:cidrs],
        peer_description=f"A{n} over the tunnel",
    )


VARIANTS = {
    "aws-primary-route-servers": aws_gateway(1),
    "aws-standby-route-servers": aws_gateway(2),
    "aws-primary-3-cidrs": aws_gateway(1, cidrs=3),
    "aws-no-route-servers": aws_gateway(1, route_servers=False),
    "azure-1": azure_gateway(1),
    "azure-2-3-cidrs": azure_gateway(2, cidrs=3),
}


@needs_bgpd
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_rendered_bgpd_conf_passes_real_bgpd_parser(name: str, tmp_path: Path) -> None:
    text = render_bgpd_conf(VARIANTS[name])
    result = bgpd_check(text, tmp_path)
    assert result.returncode == 0, f"{bgpd_version()}: bgpd -n rejected {name}:\n{text}\n{result.stderr}"


@needs_bgpd
def test_bgpd_parser_refuses_a_holdtime_below_the_minimum_the_renderer_uses(tmp_path: Path) -> None:
    """MIN_HOLDTIME is the parser's own floor: one second less fails `bgpd -n`, and the renderer
    refuses it before any file is written."""
    text = render_bgpd_conf(azure_gateway(1))
    assert f"\tholdtime {MIN_HOLDTIME}\n" in text
    lower = text.replace(f"\tholdtime {MIN_HOLDTIME}\n", f"\tholdtime {MIN_HOLDTIME - 1}\n")
    refused = bgpd_check(lower, tmp_path).returncode != 0
    assert refused, f"{bgpd_version()} accepted holdtime {MIN_HOLDTIME - 1}"
    with pytest.raises(ValueError, match="holdtime 2 is outside 3"):
        render_bgpd_conf(BgpdGateway(**{**azure_gateway(1).__dict__, "holdtime": MIN_HOLDTIME - 1}))


@needs_bgpd
def test_route_servers_get_only_the_remote_prefixes_and_give_nothing(tmp_path: Path) -> None:
    """What the real parser makes of the filter (`bgpd -nv` prints the rules it loaded): the
    peer gateway gets this side's networks and gives the other side's; the route servers get
    only the other side's and nothing is taken from them."""
    loaded = loaded_lines(render_bgpd_conf(aws_gateway(1)), tmp_path)
    rules = [line for line in loaded if line.startswith(("allow", "deny", "match"))]
    assert rules == [
        "allow from 10.20.0.10 prefix-set remote_nets",
        "allow to 10.20.0.10 prefix-set local_nets",
        "deny from group route-servers",
        "allow to group route-servers prefix-set remote_nets",
    ], loaded
    flat = " ".join(loaded)
    assert "prefix-set local_nets 10.10.1.0/24 " in flat, loaded
    assert "prefix-set remote_nets 10.20.1.0/24 " in flat, loaded


@needs_bgpd
def test_standby_prepends_toward_the_route_servers_only(tmp_path: Path) -> None:
    standby = loaded_lines(render_bgpd_conf(aws_gateway(2)), tmp_path)
    primary = loaded_lines(render_bgpd_conf(aws_gateway(1)), tmp_path)
    assert "match to group route-servers set prepend-self 2" in standby, standby
    assert not any("prepend" in line for line in primary), primary


@needs_bgpd
def test_tunnel_session_is_multihop_with_short_holdtime_and_no_fib_updates(tmp_path: Path) -> None:
    loaded = loaded_lines(render_bgpd_conf(azure_gateway(1)), tmp_path)
    start = loaded.index("neighbor 10.10.0.10")
    neighbor = loaded[start : start + loaded[start:].index("")]
    for line in ("remote-as 65010", "multihop 2", f"holdtime {MIN_HOLDTIME}", f"holdtime min {MIN_HOLDTIME}",
                 "local-address 10.20.0.10"):
        assert line in neighbor, f"{line!r} not in what bgpd loaded:\n{neighbor}"
    assert any(line.endswith("fib-update no") for line in loaded), loaded
    assert not any("route-servers" in line for line in loaded), "a gateway without route servers got a group"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"peer_as": 65010}, "both 65010"),
        ({"peer_private_ip": "10.10.0.10"}, "same address"),
        ({"remote_cidrs": ["10.10.1.128/25"]}, "overlap"),
        ({"local_as": 0}, "not an AS number"),
        ({"peer_private_ip": "10.20.0"}, "not an IPv4 address"),
        ({"route_servers": RouteServers([], 65000)}, "at least one address"),
        ({"route_servers": RouteServers(ENDPOINTS, 65020)}, "must differ"),
        ({"route_servers": RouteServers(ENDPOINTS, 65000, holdtime=1)}, "route_servers.holdtime 1"),
    ],
)
def test_renderer_refuses_what_would_make_a_wrong_or_broken_bgpd_conf(change: dict[str, object],
                                                                      message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_bgpd_conf(BgpdGateway(**{**aws_gateway(1).__dict__, **change}))  # type: ignore[arg-type]


def ha_iked(n: int, bgp: bool) -> IkedGateway:
    return IkedGateway(
        policy_name=f"pair{n}",
        local_private_ip=f"10.10.0.{9 + n}",
        local_public_ip=f"198.51.100.{9 + n}",
        peer_public_ip=f"203.0.113.{19 + n}",
        local_cidrs=AWS_NETS[:2],
        remote_cidrs=AZURE_NETS[:2],
        auth=PubkeyAuth(),
        bgp_peer_private_ip=f"10.20.0.{9 + n}" if bgp else None,
    )


def test_bgp_host_flow_is_one_more_flow_in_the_same_policy() -> None:
    plain, ha = render_iked_conf(ha_iked(1, bgp=False)), render_iked_conf(ha_iked(1, bgp=True))
    added = [line for line in ha.splitlines() if line not in plain.splitlines()]
    assert added == ["\tfrom 10.10.0.10 to 10.20.0.10 \\"], ha
    assert ha.count("ikev2 ") == 1, ha


@needs_iked
def test_iked_conf_with_the_bgp_host_flow_passes_real_iked_parser(tmp_path: Path) -> None:
    path = tmp_path / "iked.conf"
    path.write_text(render_iked_conf(ha_iked(2, bgp=True)))
    path.chmod(0o600)
    result = subprocess.run([IKED, "-n", "-f", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"iked -n rejected:\n{path.read_text()}\n{result.stderr}"


@pytest.mark.parametrize("bad", ["10.10.0.10", "not-an-ip"])
def test_bgp_host_flow_refuses_own_address_or_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="bgp_peer_private_ip"):
        render_iked_conf(IkedGateway(**{**ha_iked(1, bgp=False).__dict__, "bgp_peer_private_ip": bad}))
