"""The gateway scripts, run for real: sh reads them from stdin, the real iked -n checks the
staged iked.conf, the real openssl makes keys, and nothing is installed unless every check passes.

They run as root in a private mount namespace with scratch directories bound over /etc and /var,
and stand-ins for the OpenBSD-only commands (pfctl, rcctl, sysctl, ifconfig; in HA mode bgpctl,
and ifstated and httpd, which Debian does not package, so their `-n` checks are stand-ins too)
that log their calls. The real iked, bgpd (Debian's openbgpd) and install are logged on their
way in, so the order of checks and installs is read from one log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cross_cloud_vpn.openbsd import (
    REMOTE_SHELL,
    ConfigFile,
    GatewayHa,
    GatewaySpec,
    PskAuth,
    PubkeyAuth,
    RouteServers,
    RouteTableSteering,
    parse_bootstrap,
    render_bootstrap,
    render_gateway,
    render_read_pubkey_script,
    render_tunnel_check_script,
)
from tests.conftest import PSK

PEM = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"


def spec(auth: PubkeyAuth | PskAuth, **changes: object) -> GatewaySpec:
    base = GatewaySpec(
        site="aws", peer_site="azure", private_ip="10.10.0.10", public_ip="198.51.100.10",
        peer_public_ip="203.0.113.20", local_cidrs=["10.10.1.0/24"], remote_cidrs=["10.20.1.0/24"],
        admin_cidrs=["192.0.2.0/24"], auth=auth, peer_public_key=PEM,
    )
    return GatewaySpec(**{**base.__dict__, **changes})


def test_parse_reads_back_exactly_the_rendered_files() -> None:
    rendered = render_gateway(spec(PubkeyAuth(), local_cidrs=["10.10.1.0/24", "10.10.2.0/24"]))
    parsed = parse_bootstrap(rendered.bootstrap)
    assert parsed.files == {f.path: (f.content, f.mode) for f in rendered.files}
    assert parsed.files["/etc/iked.conf"][0] == rendered.iked_conf
    assert parsed.sysctl_lines == ("net.inet.ip.forwarding=1",)


def test_psk_travels_only_inside_the_script_never_in_the_remote_command() -> None:
    rendered = render_gateway(spec(PskAuth(PSK)))
    assert PSK in rendered.bootstrap
    assert PSK not in REMOTE_SHELL


def test_remote_shell_is_doas_non_interactive_so_a_password_prompt_fails_at_once() -> None:
    """doas(1) -n: "fail if doas would prompt for a password" instead of hanging the update."""
    assert REMOTE_SHELL.split() == ["doas", "-n", "/bin/sh", "-s"]


def test_renderer_refuses_content_that_would_end_the_here_document() -> None:
    with pytest.raises(ValueError, match="CCVPN_END_OF_FILE"):
        render_bootstrap([ConfigFile("/etc/x", "a\nCCVPN_END_OF_FILE\nb\n", 0o600)], [])


@pytest.mark.parametrize("path", ["/etc/../root/x", "etc/relative", "/etc/x; rm -rf /", "/etc/$(id)"])
def test_renderer_refuses_unsafe_paths(path: str) -> None:
    with pytest.raises(ValueError, match="unsafe path"):
        render_bootstrap([ConfigFile(path, "x\n", 0o600)], [])


# --- running the script -------------------------------------------------------------------

REAL = {name: shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
        for name in ("iked", "bgpd", "install")}
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not REAL["iked"] or not REAL["install"],
    reason="needs root, unshare and Debian's openiked",
)
needs_bgpd = pytest.mark.skipif(
    not REAL["bgpd"], reason="needs Debian's openbgpd (apt-get install --no-install-recommends openbgpd)"
)

STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CCVPN_CALLS"
case "$(basename "$0") $*" in
  "pfctl -nf"*) [ -z "$CCVPN_PF_FAIL" ] || { echo "pfctl: syntax error" >&2; exit 1; } ;;
  "rcctl check "*) [ -e "$CCVPN_RUN/$2" ] || exit 1 ;;
  "rcctl start "*|"rcctl restart "*) : > "$CCVPN_RUN/$2" ;;
esac
exit 0
"""
#: The real program, its call logged first.
LOGGED = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CCVPN_CALLS"
exec {real} "$@"
"""


def run_bootstrap(script: str, tmp_path: Path, pf_fail: bool = False, iked_running: bool = False,
                  running: tuple[str, ...] = ()) -> tuple[int, str, Path, str]:
    etc = tmp_path / "etc"
    (etc / "iked" / "pubkeys" / "ipv4").mkdir(parents=True, exist_ok=True)
    # The host's users (iked drops privileges to _iked) plus OpenBSD's wheel group.
    (etc / "group").write_text(Path("/etc/group").read_text() + "wheel:x:0:root\n")
    (etc / "passwd").write_text(Path("/etc/passwd").read_text())
    if not (etc / "iked.conf").exists():
        (etc / "iked.conf").write_text("# the previous, working config\n")
    (tmp_path / "var").mkdir(exist_ok=True)  # HA: httpd's /var/www/htdocs/... is made here
    (tmp_path / "usr_local").mkdir(exist_ok=True)  # HA, route tables: /usr/local/libexec/ccvpn-steer
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("pfctl", "rcctl", "sysctl", "ifconfig", "doas", "bgpctl", "ifstated", "httpd"):
        stub = bin_dir / name
        stub.write_text(STUB)
        stub.chmod(0o755)
    for name, real in REAL.items():
        if real:
            (bin_dir / name).write_text(LOGGED.format(real=real))
            (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls.log"
    calls.write_text("")
    run = tmp_path / "running"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    for daemon in (*running, *(["iked"] if iked_running else [])):
        (run / daemon).touch()
    env = {
        "PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin",
        "CCVPN_CALLS": str(calls),
        "CCVPN_PF_FAIL": "1" if pf_fail else "",
        "CCVPN_RUN": str(run),
    }
    # Bind the scratch trees over /etc and /var in a private mount namespace, then run `sh -s`
    # with the script on stdin, exactly as `doas /bin/sh -s` receives it over SSH.
    wrapper = (f"mount --bind {etc} /etc && mount --bind {tmp_path / 'var'} /var && "
               f"mount --bind {tmp_path / 'usr_local'} /usr/local && exec /bin/sh -s")
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "/bin/sh", "-c", wrapper],
        input=script, capture_output=True, text=True, env=env, timeout=60,
    )
    return result.returncode, result.stdout + result.stderr, etc, calls.read_text()


@needs_root
def test_first_bootstrap_installs_checked_files_loads_pf_and_starts_iked(tmp_path: Path) -> None:
    rendered = render_gateway(spec(PubkeyAuth()))
    code, output, etc, calls = run_bootstrap(rendered.bootstrap, tmp_path)
    assert code == 0, output
    assert (etc / "iked.conf").read_text() == rendered.iked_conf
    assert oct((etc / "iked.conf").stat().st_mode & 0o777) == oct(0o600)
    assert (etc / "iked/pubkeys/ipv4/203.0.113.20").read_text() == PEM
    assert (etc / "pf.conf").read_text() == rendered.pf_conf
    assert "net.inet.ip.forwarding=1" in (etc / "sysctl.conf").read_text().splitlines()
    assert calls.index("pfctl -nf") < calls.index("pfctl -f")
    assert "rcctl enable iked" in calls and "rcctl start iked" in calls and "rcctl restart" not in calls
    assert status(output) == (
        "cross-cloud-vpn: changed: /etc/iked.conf /etc/iked/pubkeys/ipv4/203.0.113.20 "
        "/etc/pf.conf (loaded) /etc/hostname.enc0; iked started"
    )


def status(output: str) -> str:
    """The one status line the bootstrap prints."""
    lines = [ln for ln in output.splitlines() if ln.startswith("cross-cloud-vpn: ")]
    assert len(lines) == 1, output
    return lines[0]


def _mtimes(etc: Path) -> dict[str, int]:
    """The files the bootstrap installs (passwd and group are the harness's own)."""
    return {str(p): p.stat().st_mtime_ns for p in etc.rglob("*")
            if p.is_file() and p.name not in ("passwd", "group")}


@needs_root
def test_second_run_with_identical_files_changes_nothing_and_restarts_nothing(tmp_path: Path) -> None:
    rendered = render_gateway(spec(PubkeyAuth()))
    assert run_bootstrap(rendered.bootstrap, tmp_path)[0] == 0
    before = _mtimes(tmp_path / "etc")
    code, output, etc, calls = run_bootstrap(rendered.bootstrap, tmp_path, iked_running=True)
    assert code == 0, output
    assert _mtimes(etc) == before, "an identical file was rewritten"
    assert "pfctl -f" not in calls and "rcctl restart" not in calls and "rcctl start" not in calls, calls
    assert status(output) == "cross-cloud-vpn: changed: nothing; iked left running"


@needs_root
def test_admin_cidr_change_reloads_pf_only_and_leaves_iked_running(tmp_path: Path) -> None:
    assert run_bootstrap(render_gateway(spec(PubkeyAuth())).bootstrap, tmp_path)[0] == 0
    wider = render_gateway(spec(PubkeyAuth(), admin_cidrs=["192.0.2.0/24", "198.18.0.0/15"]))
    code, output, etc, calls = run_bootstrap(wider.bootstrap, tmp_path, iked_running=True)
    assert code == 0, output
    assert (etc / "pf.conf").read_text() == wider.pf_conf
    assert "pfctl -f" in calls and "rcctl restart" not in calls, calls
    assert status(output) == "cross-cloud-vpn: changed: /etc/pf.conf (loaded); iked left running"


@needs_root
def test_new_peer_key_alone_restarts_nothing_because_iked_reads_it_at_each_authentication(
    tmp_path: Path,
) -> None:
    assert run_bootstrap(render_gateway(spec(PubkeyAuth())).bootstrap, tmp_path)[0] == 0
    other = PEM.replace("MFkw", "MFkx")
    code, output, etc, calls = run_bootstrap(
        render_gateway(spec(PubkeyAuth(), peer_public_key=other)).bootstrap, tmp_path, iked_running=True)
    assert code == 0, output
    assert (etc / "iked/pubkeys/ipv4/203.0.113.20").read_text() == other
    assert "rcctl restart" not in calls and "pfctl -f" not in calls, calls


@needs_root
def test_iked_conf_change_restarts_iked(tmp_path: Path) -> None:
    assert run_bootstrap(render_gateway(spec(PubkeyAuth())).bootstrap, tmp_path)[0] == 0
    more = render_gateway(spec(PubkeyAuth(), local_cidrs=["10.10.1.0/24", "10.10.2.0/24"]))
    code, output, _, calls = run_bootstrap(more.bootstrap, tmp_path, iked_running=True)
    assert code == 0, output
    assert "rcctl restart iked" in calls and "rcctl start" not in calls, calls
    assert status(output).endswith("; iked restarted")


@needs_root
def test_stopped_iked_is_started_even_when_nothing_changed(tmp_path: Path) -> None:
    rendered = render_gateway(spec(PubkeyAuth()))
    assert run_bootstrap(rendered.bootstrap, tmp_path)[0] == 0
    code, output, _, calls = run_bootstrap(rendered.bootstrap, tmp_path, iked_running=False)
    assert code == 0, output
    assert "rcctl start iked" in calls and "rcctl restart" not in calls, calls
    assert status(output) == "cross-cloud-vpn: changed: nothing; iked started"


@needs_root
def test_bootstrap_run_twice_keeps_one_sysctl_line(tmp_path: Path) -> None:
    rendered = render_gateway(spec(PubkeyAuth()))
    for _ in range(2):
        assert run_bootstrap(rendered.bootstrap, tmp_path)[0] == 0
    lines = (tmp_path / "etc" / "sysctl.conf").read_text().splitlines()
    assert lines.count("net.inet.ip.forwarding=1") == 1


@needs_root
def test_iked_config_that_fails_real_iked_check_replaces_nothing(tmp_path: Path) -> None:
    rendered = render_gateway(spec(PskAuth(PSK)))
    broken = rendered.bootstrap.replace("\tikesa enc", "\tikesa bogus", 1)
    code, output, etc, calls = run_bootstrap(broken, tmp_path)
    assert code != 0
    assert "no valid configuration rules found" in output, output
    assert (etc / "iked.conf").read_text() == "# the previous, working config\n"
    assert not (etc / "pf.conf").exists()
    assert "rcctl" not in calls and "pfctl -f" not in calls
    assert PSK not in output, "iked's error must not echo the PSK"


@needs_root
def test_pf_config_that_fails_its_check_replaces_nothing(tmp_path: Path) -> None:
    rendered = render_gateway(spec(PubkeyAuth()))
    code, output, etc, calls = run_bootstrap(rendered.bootstrap, tmp_path, pf_fail=True)
    assert code != 0 and "pfctl: syntax error" in output
    assert (etc / "iked.conf").read_text() == "# the previous, working config\n"
    assert "rcctl" not in calls


# Real `ikectl show sa` output of the lab's iked 7.2 (rehearsal `tunnel_check`), cut to the lines
# the check reads: each child SA's flags are in parentheses, L once it is loaded in the kernel.
IKE_SA = ("iked_sas: 0x552ab8a740 rspi 0x6612e7d6c6c26ba4 ispi 0x6af8f5dba2b43cbf "
          "10.10.0.10:4500->203.0.113.20:4500<IPV4/203.0.113.20>[] {state} i natt udpecap nexti (nil) "
          "pol 0x552ab8b830\n")
CHILD_OUT = ("  sa_childsas: 0x552abd4b00 ESP 0x9866eab6 out 10.10.0.10:4500 -> 203.0.113.20:4500 ({flags}) "
             "B=(nil) P=0x552abd4bb0 @0x552ab8a740\n")
CHILD_IN = ("  sa_childsas: 0x552abd4bb0 ESP 0x6adffc4d in 203.0.113.20:4500 -> 10.10.0.10:4500 ({flags}) "
            "B=(nil) P=0x552abd4b00 @0x552ab8a740\n")
FLOW = "  sa_flows: 0x552abd48c0 ESP out 10.20.1.0/24 -> 10.10.1.0/24 [0]@-1 (L) @0x552ab8a740\n"
UP = IKE_SA.format(state="ESTABLISHED") + CHILD_OUT.format(flags="L") + CHILD_IN.format(flags="LA") + FLOW
NOT_LOADED = (IKE_SA.format(state="ESTABLISHED") + CHILD_OUT.format(flags="") + CHILD_IN.format(flags="A")
              + FLOW)
CLOSING = IKE_SA.format(state="CLOSING") + CHILD_OUT.format(flags="L")


def run_check(tmp_path: Path, ikectl_says: str, require_up: bool = True, daemon_log: str | None = None
              ) -> subprocess.CompletedProcess[str]:
    """The check script, with sh, against an `ikectl` that prints what it is given."""
    (tmp_path / "says").write_text(ikectl_says)
    stub = tmp_path / "ikectl"
    stub.write_text(f"#!/bin/sh\ncat {tmp_path / 'says'}\n")
    stub.chmod(0o755)
    script = render_tunnel_check_script(wait_seconds=0, require_up=require_up)
    cmd = ["/bin/sh", "-s"]
    if daemon_log is not None:
        # /var/log/daemon, where OpenBSD's syslogd puts iked's lines, in a private mount namespace.
        (tmp_path / "log").mkdir(exist_ok=True)
        (tmp_path / "log" / "daemon").write_text(daemon_log)
        cmd = ["unshare", "-m", "--propagation", "private", "/bin/sh", "-c",
               f"mount --bind {tmp_path / 'log'} /var/log && exec /bin/sh -s"]
    return subprocess.run(cmd, input=script, capture_output=True, text=True, timeout=30,
                          env={"PATH": f"{tmp_path}:/usr/bin:/bin"})


@pytest.mark.parametrize(
    ("ikectl_says", "expected"),
    [
        (UP, "tunnel: up"),
        (NOT_LOADED, "tunnel: down"),  # negotiated, but no child SA in the kernel
        (IKE_SA.format(state="ESTABLISHED"), "tunnel: down"),  # no child SA at all
        (CLOSING, "tunnel: down"),
        ("ikectl: connect: /var/run/iked.sock: No such file or directory\n", "tunnel: down"),
    ],
    ids=["established_loaded", "children_not_loaded", "no_child_sa", "closing", "iked_not_running"],
)
def test_tunnel_check_is_up_only_with_an_established_sa_and_a_loaded_child_sa(
    tmp_path: Path, ikectl_says: str, expected: str
) -> None:
    result = run_check(tmp_path, ikectl_says)
    assert result.stdout.splitlines()[0] == expected, result.stdout
    assert (result.returncode == 0) == (expected == "tunnel: up"), result


def test_tunnel_check_that_may_not_fail_prints_down_and_exits_zero(tmp_path: Path) -> None:
    result = run_check(tmp_path, NOT_LOADED, require_up=False)
    assert result.returncode == 0 and result.stdout.splitlines()[0] == "tunnel: down"


@needs_root
def test_tunnel_check_that_fails_shows_ikectl_output_and_ikeds_last_log_lines(tmp_path: Path) -> None:
    log = "".join(f"Nov 25 17:00:{i:02d} gw iked[4242]: line {i}\n" for i in range(30))
    log += "Nov 25 17:01:00 gw ntpd[99]: not iked\n"
    result = run_check(tmp_path, CLOSING, daemon_log=log)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == "tunnel: down"
    assert "CLOSING" in result.stderr and "not up after 0s" in result.stderr
    shown = [ln for ln in result.stderr.splitlines() if "iked[4242]" in ln]
    assert shown == log.splitlines()[10:30], "the last 20 iked lines, oldest first"
    assert "ntpd" not in result.stderr


# --- the gateway's own iked key --------------------------------------------------------------


def run_read_pubkey(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """render_read_pubkey_script with sh, the scratch /etc bound over /etc."""
    etc = tmp_path / "etc"
    (etc / "iked" / "private").mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "/bin/sh", "-c",
         f"mount --bind {etc} /etc && exec /bin/sh -s"],
        input=render_read_pubkey_script(), capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


def _openssl(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True, check=True).stdout


@needs_root
def test_read_pubkey_makes_a_p256_pair_as_openbsd_rc_does_when_there_is_none(tmp_path: Path) -> None:
    result = run_read_pubkey(tmp_path)
    assert result.returncode == 0, result.stderr
    key = tmp_path / "etc/iked/private/local.key"
    assert oct(key.stat().st_mode & 0o777) == oct(0o600)
    # rc's `openssl ecparam -genkey -name prime256v1 -out ...`: parameters, then the EC key.
    assert key.read_text().startswith("-----BEGIN EC PARAMETERS-----")
    assert "prime256v1" in _openssl("pkey", "-in", str(key), "-noout", "-text")
    assert result.stdout == (tmp_path / "etc/iked/local.pub").read_text()
    assert result.stdout == _openssl("pkey", "-in", str(key), "-pubout")


@needs_root
@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_read_pubkey_derives_a_missing_local_pub_from_any_key_type(tmp_path: Path, kind: str) -> None:
    key = tmp_path / "etc/iked/private/local.key"
    key.parent.mkdir(parents=True)
    if kind == "ec":
        _openssl("ecparam", "-genkey", "-name", "prime256v1", "-out", str(key))
    else:  # an image from before rc made ECDSA keys
        _openssl("genrsa", "-out", str(key), "2048")
    before = key.read_bytes()
    result = run_read_pubkey(tmp_path)
    assert result.returncode == 0, result.stderr
    assert key.read_bytes() == before, "the existing key must be kept"
    assert result.stdout == _openssl("pkey", "-in", str(key), "-pubout")


@needs_root
def test_read_pubkey_prints_an_existing_local_pub_and_touches_nothing(tmp_path: Path) -> None:
    key, pub = tmp_path / "etc/iked/private/local.key", tmp_path / "etc/iked/local.pub"
    key.parent.mkdir(parents=True)
    key.write_text("not read\n")
    pub.write_text(PEM)
    result = run_read_pubkey(tmp_path)
    assert result.returncode == 0 and result.stdout == PEM
    assert key.read_text() == "not read\n"


# --- HA mode (issue 13): bgpd, and on Azure the probe responder -------------------------------

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("auth", ["pubkey", "psk"])
def test_single_gateway_bootstrap_is_byte_identical_to_the_one_before_ha_mode(auth: str) -> None:
    """tests/golden/ holds the scripts rendered before GatewaySpec had an `ha` part."""
    rendered = render_gateway(spec(PubkeyAuth() if auth == "pubkey" else PskAuth(PSK)))
    assert rendered.bootstrap == (GOLDEN / f"bootstrap_single_{auth}.sh").read_text()


ENDPOINTS = ["10.10.0.230", "10.10.0.231"]


def aws_ha(**changes: object) -> GatewaySpec:
    """A1: the tunnel to B1 carries their BGP session; re-announces to the Route Server."""
    ha = GatewayHa(local_as=65010, peer_as=65020, peer_private_ip="10.20.0.10",
                   route_servers=RouteServers(ENDPOINTS, remote_as=65000))
    return spec(PubkeyAuth(), **{"ha": ha, **changes})


def azure_ha(**changes: object) -> GatewaySpec:
    """B1: the same session from the other end; answers the load balancer's probe on 8080."""
    ha = GatewayHa(local_as=65020, peer_as=65010, peer_private_ip="10.10.0.10", probe_port=8080)
    return spec(PubkeyAuth(), **{
        "site": "azure", "peer_site": "aws", "private_ip": "10.20.0.10", "public_ip": "203.0.113.20",
        "peer_public_ip": "198.51.100.10", "local_cidrs": ["10.20.1.0/24"], "remote_cidrs": ["10.10.1.0/24"],
        "ha": ha, **changes})


def test_ha_adds_bgpd_everywhere_and_the_probe_responder_only_where_a_probe_port_is_given() -> None:
    aws, azure = render_gateway(aws_ha()), render_gateway(azure_ha())
    plan = {name: [(f.path, f.check, f.restarts, f.reload) for f in r.files[4:]]
            for name, r in (("aws", aws), ("azure", azure))}
    bgpd = ("/etc/bgpd.conf", "bgpd -n -f {path}", "bgpd", "bgpctl reload")
    assert plan["aws"] == [bgpd]
    assert plan["azure"] == [bgpd, ("/etc/ifstated.conf", "ifstated -n -f {path}", "ifstated", None),
                             ("/etc/httpd.conf", "httpd -n -f {path}", "httpd", None)]
    assert "\tfrom 10.20.0.10 to 10.10.0.10 \\\n" in azure.iked_conf  # the BGP host flow
    assert "block out log quick on egress inet to $peer_gw" in aws.pf_conf.splitlines()
    assert "pass in on egress inet proto tcp from $lb_probe to $gw port 8080" in azure.pf_conf.splitlines()
    assert "lb_probe" not in aws.pf_conf
    assert "ifstated" not in aws.bootstrap and "/var/www" not in aws.bootstrap


def test_ha_gateway_steered_by_both_route_servers_and_a_probe_is_refused() -> None:
    both = GatewayHa(local_as=65010, peer_as=65020, peer_private_ip="10.20.0.10",
                     route_servers=RouteServers(ENDPOINTS, remote_as=65000), probe_port=8080)
    with pytest.raises(ValueError, match="not both"):
        render_gateway(spec(PubkeyAuth(), ha=both))


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([ConfigFile("/etc/a", "a\n", 0o600, reload="bgpctl reload")], "names no daemon"),
        ([ConfigFile("/etc/a", "a\n", 0o600, restarts="bgpd", reload="bgpctl reload"),
          ConfigFile("/etc/b", "b\n", 0o600, restarts="bgpd")], "disagree on how it reloads"),
    ],
)
def test_renderer_refuses_a_reload_without_its_daemon_or_two_ways_to_reload_one(
    files: list[ConfigFile], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        render_bootstrap(files, [])


def _first(calls: str, prefix: str) -> int:
    lines = calls.splitlines()
    return next(i for i, line in enumerate(lines) if line.startswith(prefix))


HA_DAEMONS = ("bgpd", "httpd", "ifstated", "iked")


@needs_root
@needs_bgpd
def test_ha_bootstrap_checks_every_file_with_its_parser_before_installing_any(tmp_path: Path) -> None:
    rendered = render_gateway(azure_ha())
    code, output, etc, calls = run_bootstrap(rendered.bootstrap, tmp_path)
    assert code == 0, output
    for f in rendered.files:
        assert (etc / f.path.removeprefix("/etc/")).read_text() == f.content, f.path
    checks = [_first(calls, c) for c in ("iked -n -f", "pfctl -nf", "bgpd -n -f", "ifstated -n -f",
                                         "httpd -n -f")]
    assert max(checks) < _first(calls, "install ") and max(checks) < _first(calls, "pfctl -f"), calls
    htdocs = tmp_path / "var/www/htdocs/ilb"
    assert oct(htdocs.stat().st_mode & 0o777) == oct(0o755), "httpd serves as www: the directory is 0755"
    for daemon in HA_DAEMONS:
        assert f"rcctl enable {daemon}\nrcctl check {daemon}\nrcctl start {daemon}\n" in calls, calls
    assert "restart" not in calls and "bgpctl" not in calls, calls
    assert status(output) == (
        "cross-cloud-vpn: changed: /etc/iked.conf /etc/iked/pubkeys/ipv4/198.51.100.10 /etc/pf.conf (loaded) "
        "/etc/hostname.enc0 /etc/bgpd.conf /etc/ifstated.conf /etc/httpd.conf; "
        "bgpd started; httpd started; ifstated started; iked started"
    )


@needs_root
@needs_bgpd
def test_ha_second_run_with_identical_files_changes_nothing_and_restarts_nothing(tmp_path: Path) -> None:
    rendered = render_gateway(azure_ha())
    assert run_bootstrap(rendered.bootstrap, tmp_path)[0] == 0
    before = _mtimes(tmp_path / "etc")
    code, output, etc, calls = run_bootstrap(rendered.bootstrap, tmp_path, running=HA_DAEMONS)
    assert code == 0, output
    assert _mtimes(etc) == before, "an identical file was rewritten"
    assert "install -o" not in calls and "pfctl -f" not in calls and "bgpctl" not in calls, calls
    assert "rcctl start" not in calls and "rcctl restart" not in calls, calls
    assert status(output) == ("cross-cloud-vpn: changed: nothing; bgpd left running; httpd left running; "
                              "ifstated left running; iked left running")


@needs_root
@needs_bgpd
def test_ha_bgpd_conf_change_reloads_bgpd_and_leaves_iked_running(tmp_path: Path) -> None:
    assert run_bootstrap(render_gateway(aws_ha()).bootstrap, tmp_path)[0] == 0
    standby = aws_ha(ha=GatewayHa(local_as=65010, peer_as=65020, peer_private_ip="10.20.0.10",
                                  route_servers=RouteServers(ENDPOINTS, remote_as=65000, standby=True)))
    rendered = render_gateway(standby)
    code, output, etc, calls = run_bootstrap(rendered.bootstrap, tmp_path, running=("bgpd", "iked"))
    assert code == 0, output
    assert (etc / "bgpd.conf").read_text() == rendered.files[-1].content
    assert "prepend-self" in (etc / "bgpd.conf").read_text()
    assert "bgpctl reload" in calls and "rcctl restart" not in calls and "pfctl -f" not in calls, calls
    assert status(output) == "cross-cloud-vpn: changed: /etc/bgpd.conf; bgpd reloaded; iked left running"


@needs_root
@needs_bgpd
def test_ha_bgpd_conf_that_real_bgpd_refuses_replaces_nothing(tmp_path: Path) -> None:
    assert run_bootstrap(render_gateway(aws_ha()).bootstrap, tmp_path)[0] == 0
    before = {p: p.read_text() for p in (tmp_path / "etc").rglob("*") if p.is_file()}
    # A change to every file of the gateway (one more network), with a bgpd.conf holdtime below
    # OpenBGPD's floor of 3 (bgpd.conf(5) `holdtime`), which bgpd -n refuses.
    wider = render_gateway(aws_ha(local_cidrs=["10.10.1.0/24", "10.10.2.0/24"])).bootstrap
    assert wider.count("\tholdtime 3\n") == 1
    broken = wider.replace("\tholdtime 3\n", "\tholdtime 2\n")
    code, output, etc, calls = run_bootstrap(broken, tmp_path, running=("bgpd", "iked"))
    assert code != 0 and "holdtime" in output, output  # bgpd's own message names the line
    assert "bgpd -n -f" in calls and "install" not in calls, calls
    assert "rcctl" not in calls and "pfctl -f" not in calls and "bgpctl" not in calls, calls
    assert {p: p.read_text() for p in etc.rglob("*") if p.is_file()} == before


def aws_route_tables_ha(standby: bool = False) -> GatewaySpec:
    """A1 steering the workload route tables itself (openbsd/steer.py), no route server."""
    steering = RouteTableSteering(region="eu-west-1", route_table_ids=["rtb-0123456789abcdef0"],
                                  partner_private_ip="10.10.0.11", standby=standby)
    return aws_ha(ha=GatewayHa(local_as=65010, peer_as=65020, peer_private_ip="10.20.0.10", probe_port=8080,
                               route_tables=steering))


@needs_root
@needs_bgpd
def test_ha_route_table_bootstrap_checks_the_steering_scripts_installs_them_and_starts_the_daemon(
    tmp_path: Path,
) -> None:
    rendered = render_gateway(aws_route_tables_ha())
    code, output, etc, calls = run_bootstrap(rendered.bootstrap, tmp_path)
    assert code == 0, output
    script = tmp_path / "usr_local/libexec/ccvpn-steer"
    rc = etc / "rc.d/ccvpn_steer"
    assert script.read_text() == rendered.files[7].content and oct(script.stat().st_mode & 0o777) == "0o755"
    assert rc.read_text() == rendered.files[8].content and oct(rc.stat().st_mode & 0o777) == "0o555"
    assert "rcctl enable ccvpn_steer\nrcctl check ccvpn_steer\nrcctl start ccvpn_steer\n" in calls, calls
    assert status(output).endswith("bgpd started; ccvpn_steer started; httpd started; ifstated started; "
                                   "iked started")


@needs_root
@needs_bgpd
def test_ha_route_table_standby_change_restarts_only_the_steering_daemon(tmp_path: Path) -> None:
    assert run_bootstrap(render_gateway(aws_route_tables_ha()).bootstrap, tmp_path)[0] == 0
    rendered = render_gateway(aws_route_tables_ha(standby=True))
    code, output, _etc, calls = run_bootstrap(rendered.bootstrap, tmp_path,
                                              running=("bgpd", "ccvpn_steer", "httpd", "ifstated", "iked"))
    assert code == 0, output
    assert "rcctl restart ccvpn_steer" in calls and "bgpctl reload" not in calls, calls
    assert "role='standby'" in (tmp_path / "usr_local/libexec/ccvpn-steer").read_text()
    assert status(output) == ("cross-cloud-vpn: changed: /usr/local/libexec/ccvpn-steer; bgpd left running; "
                              "ccvpn_steer restarted; httpd left running; ifstated left running; "
                              "iked left running")


@needs_root
@needs_bgpd
def test_ha_route_table_steering_script_with_a_syntax_error_replaces_nothing(tmp_path: Path) -> None:
    good = render_gateway(aws_route_tables_ha()).bootstrap
    assert run_bootstrap(good, tmp_path)[0] == 0
    before = (tmp_path / "usr_local/libexec/ccvpn-steer").read_text()
    standby = render_gateway(aws_route_tables_ha(standby=True)).bootstrap
    marker = "\nmain() {\n\tumask 077\n"  # the steering script's own main, not the bootstrap's
    assert standby.count(marker) == 1
    broken = standby.replace(marker, "\nmain() {\n(\n\tumask 077\n")
    code, output, _etc, calls = run_bootstrap(broken, tmp_path, running=("ccvpn_steer", "iked"))
    assert code != 0 and "Syntax error" in output, output  # sh -n (dash here) names the line
    assert "install" not in calls and "rcctl" not in calls, calls
    assert (tmp_path / "usr_local/libexec/ccvpn-steer").read_text() == before
