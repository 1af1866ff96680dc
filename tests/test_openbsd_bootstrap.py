"""The bootstrap script, run for real: sh reads it from stdin, the real iked -n checks the
staged iked.conf, and nothing is installed unless every check passes.

It runs as root in a private mount namespace with a scratch directory bound over /etc, and
stand-ins for the OpenBSD-only commands (pfctl, rcctl, sysctl, ifconfig) that log their calls.
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
    GatewaySpec,
    PskAuth,
    PubkeyAuth,
    parse_bootstrap,
    render_bootstrap,
    render_gateway,
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
    assert PSK not in REMOTE_SHELL and REMOTE_SHELL == "doas /bin/sh -s"


def test_renderer_refuses_content_that_would_end_the_here_document() -> None:
    with pytest.raises(ValueError, match="CCVPN_END_OF_FILE"):
        render_bootstrap([ConfigFile("/etc/x", "a\nCCVPN_END_OF_FILE\nb\n", 0o600)], [])


@pytest.mark.parametrize("path", ["/etc/../root/x", "etc/relative", "/etc/x; rm -rf /", "/etc/$(id)"])
def test_renderer_refuses_unsafe_paths(path: str) -> None:
    with pytest.raises(ValueError, match="unsafe path"):
        render_bootstrap([ConfigFile(path, "x\n", 0o600)], [])


# --- running the script -------------------------------------------------------------------

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("iked"),
    reason="needs root, unshare and Debian's openiked",
)

STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CCVPN_CALLS"
case "$(basename "$0") $*" in
  "pfctl -nf"*) [ -z "$CCVPN_PF_FAIL" ] || { echo "pfctl: syntax error" >&2; exit 1; } ;;
esac
exit 0
"""


def run_bootstrap(script: str, tmp_path: Path, pf_fail: bool = False) -> tuple[int, str, Path, str]:
    etc = tmp_path / "etc"
    (etc / "iked" / "pubkeys" / "ipv4").mkdir(parents=True, exist_ok=True)
    # The host's users (iked drops privileges to _iked) plus OpenBSD's wheel group.
    (etc / "group").write_text(Path("/etc/group").read_text() + "wheel:x:0:root\n")
    (etc / "passwd").write_text(Path("/etc/passwd").read_text())
    if not (etc / "iked.conf").exists():
        (etc / "iked.conf").write_text("# the previous, working config\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("pfctl", "rcctl", "sysctl", "ifconfig", "doas"):
        stub = bin_dir / name
        stub.write_text(STUB)
        stub.chmod(0o755)
    calls = tmp_path / "calls.log"
    calls.write_text("")
    env = {
        "PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin",
        "CCVPN_CALLS": str(calls),
        "CCVPN_PF_FAIL": "1" if pf_fail else "",
    }
    # Bind the scratch tree over /etc in a private mount namespace, then run `sh -s` with
    # the script on stdin, exactly as `doas /bin/sh -s` receives it over SSH.
    wrapper = f"mount --bind {etc} /etc && exec /bin/sh -s"
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "/bin/sh", "-c", wrapper],
        input=script, capture_output=True, text=True, env=env, timeout=60,
    )
    return result.returncode, result.stdout + result.stderr, etc, calls.read_text()


@needs_root
def test_bootstrap_installs_checked_files_and_restarts_iked(tmp_path: Path) -> None:
    rendered = render_gateway(spec(PubkeyAuth()))
    code, output, etc, calls = run_bootstrap(rendered.bootstrap, tmp_path)
    assert code == 0, output
    assert (etc / "iked.conf").read_text() == rendered.iked_conf
    assert oct((etc / "iked.conf").stat().st_mode & 0o777) == oct(0o600)
    assert (etc / "iked/pubkeys/ipv4/203.0.113.20").read_text() == PEM
    assert (etc / "pf.conf").read_text() == rendered.pf_conf
    assert "net.inet.ip.forwarding=1" in (etc / "sysctl.conf").read_text().splitlines()
    assert calls.index("pfctl -nf") < calls.index("pfctl -f /etc/pf.conf")
    assert "rcctl restart iked" in calls and "rcctl enable iked" in calls


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


@pytest.mark.parametrize(
    ("ikectl_says", "expected"),
    [
        ("iked_sas: 0x1 ESTABLISHED i natt\n  sa_childsas: 0x2 ESP 0x79 out\n", "tunnel: up"),
        ("iked_sas: 0x1 ESTABLISHED i natt\n", "tunnel: down"),  # no child SA: half made
        ("iked_sas: 0x1 SA_INIT i\n", "tunnel: down"),
        ("", "tunnel: down"),
    ],
    ids=["established", "no_child_sa", "sa_init", "nothing"],
)
def test_tunnel_check_script_reads_ikectl_output(tmp_path: Path, ikectl_says: str, expected: str) -> None:
    """The real-ikectl case is covered in the rehearsal; here the script's decision, with sh."""
    stub = tmp_path / "ikectl"
    stub.write_text(f"#!/bin/sh\nprintf '%s' '{ikectl_says}'\n")
    stub.chmod(0o755)
    script = render_tunnel_check_script(wait_seconds=0)
    result = subprocess.run(["/bin/sh", "-s"], input=script, capture_output=True, text=True, timeout=30,
                            env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert result.stdout.splitlines()[0] == expected, result.stdout
