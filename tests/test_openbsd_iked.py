"""Every iked.conf the program can render is accepted by the real OpenIKED parser (iked -n)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cross_cloud_vpn.openbsd import (
    GatewaySpec,
    IkedGateway,
    PskAuth,
    PubkeyAuth,
    Role,
    render_gateway,
    render_iked_conf,
)
from tests.conftest import PSK

IKED = shutil.which("iked") or "/usr/sbin/iked"
pytestmark = pytest.mark.skipif(
    not Path(IKED).exists(), reason="Debian package openiked is not installed (apt-get install openiked)"
)

AWS_PUBLIC, AZURE_PUBLIC = "198.51.100.10", "203.0.113.20"
AWS_NETS = ["10.10.1.0/24", "10.10.2.0/24", "10.10.3.0/24"]
AZURE_NETS = ["10.20.1.0/24", "10.20.2.0/24", "10.20.3.0/24"]


def iked_check(text: str, tmp_path: Path, mode: int = 0o600) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "iked.conf"
    path.write_text(text)
    path.chmod(mode)
    return subprocess.run([IKED, "-n", "-f", str(path)], capture_output=True, text=True, timeout=30)


def side(site: str, n: int, auth: PubkeyAuth | PskAuth, role: Role = "active") -> IkedGateway:
    aws = site == "aws"
    return IkedGateway(
        policy_name=f"{site}-to-{'azure' if aws else 'aws'}",
        local_private_ip="10.10.0.10" if aws else "10.20.0.10",
        local_public_ip=AWS_PUBLIC if aws else AZURE_PUBLIC,
        peer_public_ip=AZURE_PUBLIC if aws else AWS_PUBLIC,
        local_cidrs=(AWS_NETS if aws else AZURE_NETS)[:n],
        remote_cidrs=(AZURE_NETS if aws else AWS_NETS)[:n],
        auth=auth,
        role=role,
    )


@pytest.mark.parametrize("site", ["aws", "azure"])
@pytest.mark.parametrize("n_cidrs", [1, 3])
@pytest.mark.parametrize("auth", [PubkeyAuth(), PskAuth(PSK)], ids=["pubkey", "psk"])
@pytest.mark.parametrize("role", ["active", "passive"])
def test_rendered_iked_conf_passes_real_iked_parser(
    tmp_path: Path, site: str, n_cidrs: int, auth: PubkeyAuth | PskAuth, role: Role
) -> None:
    text = render_iked_conf(side(site, n_cidrs, auth, role))
    result = iked_check(text, tmp_path)
    assert result.returncode == 0, f"iked -n rejected:\n{text}\n{result.stderr}"
    assert "configuration OK" in result.stdout + result.stderr


def test_iked_check_rejects_a_broken_file(tmp_path: Path) -> None:
    """The check above can fail: a srcid before ikesa is a grammar error for iked."""
    text = render_iked_conf(side("aws", 1, PubkeyAuth()))
    lines = text.splitlines()
    ikesa = next(i for i, line in enumerate(lines) if "ikesa" in line)
    srcid = next(i for i, line in enumerate(lines) if "srcid" in line)
    lines[ikesa], lines[srcid] = lines[srcid], lines[ikesa]
    result = iked_check("\n".join(lines) + "\n", tmp_path)
    assert result.returncode != 0, "iked -n accepted a file with srcid before ikesa"


def test_iked_refuses_a_world_readable_file_so_we_render_0600(tmp_path: Path) -> None:
    text = render_iked_conf(side("aws", 1, PubkeyAuth()))
    assert iked_check(text, tmp_path, mode=0o644).returncode != 0
    spec = render_gateway(_spec(PubkeyAuth()))
    assert {f.path: f.mode for f in spec.files}["/etc/iked.conf"] == 0o600


def _spec(auth: PubkeyAuth | PskAuth, n: int = 1) -> GatewaySpec:
    return GatewaySpec(
        site="aws", peer_site="azure", private_ip="10.10.0.10", public_ip=AWS_PUBLIC,
        peer_public_ip=AZURE_PUBLIC, local_cidrs=AWS_NETS[:n], remote_cidrs=AZURE_NETS[:n],
        admin_cidrs=["192.0.2.0/24"], auth=auth,
        peer_public_key="-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n",
    )


def test_iked_conf_is_nat_correct_local_private_peer_and_ids_public() -> None:
    text = render_iked_conf(side("aws", 1, PubkeyAuth()))
    assert "local 10.10.0.10 peer 203.0.113.20" in text
    assert 'srcid "198.51.100.10" dstid "203.0.113.20"' in text
    azure = render_iked_conf(side("azure", 1, PubkeyAuth()))
    assert "local 10.20.0.10 peer 198.51.100.10" in azure
    assert 'srcid "203.0.113.20" dstid "198.51.100.10"' in azure


def test_one_flow_line_per_local_remote_pair_never_a_brace_list() -> None:
    text = render_iked_conf(side("aws", 3, PubkeyAuth()))
    flows = [line.strip(" \t\\") for line in text.splitlines() if line.strip().startswith("from ")]
    assert sorted(flows) == sorted(f"from {a} to {b}" for a in AWS_NETS for b in AZURE_NETS)
    assert "{" not in text


def test_default_renders_both_active_with_enforcesingleikesa_and_measured_proposals() -> None:
    text = render_iked_conf(side("aws", 1, PubkeyAuth()))
    assert "set enforcesingleikesa" in text
    assert '"aws-to-azure" active esp' in text
    assert "ikesa enc aes-256-gcm prf hmac-sha2-256 group curve25519" in text
    children = [line.strip(" \t\\") for line in text.splitlines() if "childsa" in line]
    assert children == [
        "childsa enc aes-256-gcm group curve25519",
        "childsa enc aes-256 auth hmac-sha2-512 group curve25519",
    ]
    assert "set dpd_check_interval 30" in text


def test_pubkey_mode_holds_no_secret_and_psk_mode_holds_the_psk() -> None:
    pub = render_iked_conf(side("aws", 1, PubkeyAuth()))
    # RFC 7427 signatures (SHA2-256) with the host's RSA key, not the SHA-1 `rsa` method.
    assert "psk" not in pub and pub.rstrip().endswith("rfc7427")
    psk = render_iked_conf(side("aws", 1, PskAuth(PSK)))
    assert f'psk "{PSK}"' in psk


def test_pubkey_mode_installs_peer_key_where_iked_looks_it_up() -> None:
    rendered = render_gateway(_spec(PubkeyAuth()))
    paths = {f.path: f for f in rendered.files}
    key = paths["/etc/iked/pubkeys/ipv4/203.0.113.20"]
    assert key.content.startswith("-----BEGIN PUBLIC KEY-----") and key.mode == 0o644
    psk = render_gateway(_spec(PskAuth(PSK)))
    assert not any("pubkeys" in f.path for f in psk.files)


@pytest.mark.parametrize(
    "bad_psk", ['short', 'twenty-chars-with-a-"-quote', "line\nbreak-and-long-enough-xx"]
)
def test_renderer_refuses_psk_that_would_break_the_file(bad_psk: str) -> None:
    with pytest.raises(ValueError) as caught:
        render_iked_conf(side("aws", 1, PskAuth(bad_psk)))
    assert bad_psk not in str(caught.value)


def test_renderer_refuses_peer_key_that_is_not_pem() -> None:
    spec = _spec(PubkeyAuth())
    bad = GatewaySpec(**{**spec.__dict__, "peer_public_key": "ssh-rsa AAAA not pem"})
    with pytest.raises(ValueError, match=r"azure gateway.s /etc/iked/local\.pub is not a PEM"):
        render_gateway(bad)
