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
    proposal_problems,
    psk_problem_text,
    render_gateway,
    render_iked_conf,
)
from cross_cloud_vpn.openbsd.iked import _FLAGS, _TRANSFORMS
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
    # RFC 7427 signatures (SHA2-256) with the host's ECDSA P-256 key, not the RSA-only `rsa`.
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


# --- proposals: the check and the real parser agree both ways ------------------------------

IKE_BASE = "enc aes-256-gcm prf hmac-sha2-256 group curve25519"
CHILD_BASE = "enc aes-256 auth hmac-sha2-512"


def _iked_accepts_proposals(tmp_path: Path, ike: str, child: str) -> bool:
    gw = side("aws", 1, PskAuth(PSK))
    text = render_iked_conf(gw).replace(f"ikesa {gw.ike_proposal}", f"ikesa {ike}", 1)
    text = "\n".join(ln for ln in text.splitlines() if "childsa" not in ln) + "\n"
    text = text.replace("\tsrcid", f"\tchildsa {child} \\\n\tsrcid", 1)
    return iked_check(text, tmp_path).returncode == 0


def _every_accepted_value(kind: str) -> list[str]:
    """One proposal per value the check accepts, each value in a proposal that needs it."""
    base_enc = "aes-256-gcm" if kind == "ike" else "aes-256"
    out = []
    for keyword, values in _TRANSFORMS[kind].items():
        for value in sorted(values):
            if keyword == "enc":
                out.append(f"enc {value}")
            elif keyword == "auth":
                out.append(f"enc aes-256 auth {value}")
            else:
                out.append(f"enc {base_enc} {keyword} {value}")
    out += [f"enc {base_enc} {flag}" for flag in sorted(_FLAGS[kind])]
    return out


#: Proposals the check refuses because the real parser does (Debian 7.2 measured, and
#: OpenBSD's parse.y tables): each pair is (kind, proposal).
REFUSED_BY_BOTH = [
    ("ike", "enc aes-256-ctr"), ("ike", "enc chacha20-poly1305"), ("ike", "enc aes-128-gmac"),
    ("ike", "enc aes-192-gcm"), ("ike", "enc blowfish"), ("ike", "enc null"),
    ("ike", "enc aes-256-gcm group none"), ("ike", "enc aes-256-gcm esn"), ("ike", "enc aes-256-gcm noesn"),
    ("ike", "enc aes-256-gcm auth hmac-sha2-256"), ("ike", "enc aes-256-gcm enc aes-256"),
    ("ike", "enc aes-256 prf hmac-ripemd160"), ("ike", "enc aes-256 group ec2n155"), ("ike", "bogus aes-256"),
    ("child", "enc aes-256-gcm-12"), ("child", "enc aes-128-gcm-12"),
    ("child", "enc aes-256-gcm auth hmac-sha2-256"),
    ("child", "enc chacha20-poly1305 auth hmac-sha2-256"), ("child", "enc aes-256-gcm enc aes-256"),
    ("child", "enc aes-256 auth hmac-ripemd160"), ("child", "enc aes-256 group ec2n155"),
]
#: Refused by the check although Debian's 7.2 parser takes them: ecp192 is gone from OpenBSD's
#: groupxfs (parse.y 1.149, 2025), and `prf` means nothing in a child SA.
REFUSED_CONSERVATIVELY = [("ike", "enc aes-256-gcm group ecp192"), ("child", "enc aes-256 group grp25"),
                          ("child", "enc aes-256 prf hmac-sha2-256")]


@pytest.mark.parametrize("kind", ["ike", "child"])
def test_every_proposal_value_the_check_accepts_is_accepted_by_real_iked(tmp_path: Path, kind: str) -> None:
    proposals = _every_accepted_value(kind)
    assert len(proposals) > 25
    refused = []
    for proposal in proposals:
        assert proposal_problems(proposal, kind) == [], proposal  # type: ignore[arg-type]
        ike, child = (proposal, CHILD_BASE) if kind == "ike" else (IKE_BASE, proposal)
        if not _iked_accepts_proposals(tmp_path, ike, child):
            refused.append(proposal)
    assert refused == [], f"the check accepts {kind} proposals that iked -n refuses: {refused}"


def test_every_proposal_the_check_refuses_is_refused_by_real_iked(tmp_path: Path) -> None:
    accepted = []
    for kind, proposal in REFUSED_BY_BOTH:
        assert proposal_problems(proposal, kind), f"the check accepts {kind} {proposal!r}"  # type: ignore[arg-type]
        ike, child = (proposal, CHILD_BASE) if kind == "ike" else (IKE_BASE, proposal)
        if _iked_accepts_proposals(tmp_path, ike, child):
            accepted.append((kind, proposal))
    assert accepted == [], f"iked -n accepts what the check refuses: {accepted}"
    for kind, proposal in REFUSED_CONSERVATIVELY:
        assert proposal_problems(proposal, kind), proposal  # type: ignore[arg-type]


def test_agreement_harness_can_tell_accept_from_refuse(tmp_path: Path) -> None:
    assert _iked_accepts_proposals(tmp_path, IKE_BASE, CHILD_BASE)
    assert not _iked_accepts_proposals(tmp_path, "enc aes-256-ctr", CHILD_BASE)


# --- PSK, DPD, roles -----------------------------------------------------------------------

def test_psk_starting_0x_is_refused_because_iked_reads_it_as_hex(tmp_path: Path) -> None:
    hexish = "0x00112233445566778899aabbccddeeff"
    text = render_iked_conf(side("aws", 1, PskAuth(PSK))).replace(PSK, hexish)
    assert iked_check(text, tmp_path).returncode == 0  # iked takes it, as 16 bytes of hex
    assert iked_check(text.replace(hexish, "0xnot-hex-digits-at-all-0000"), tmp_path).returncode != 0
    why = psk_problem_text(hexish)
    assert why is not None and "0x" in why and hexish not in why
    with pytest.raises(ValueError, match="0x"):
        render_iked_conf(side("aws", 1, PskAuth(hexish)))
    assert psk_problem_text("x0" + hexish) is None


def test_dpd_interval_zero_renders_zero_and_real_iked_accepts_it(tmp_path: Path) -> None:
    gw = IkedGateway(**{**side("aws", 1, PubkeyAuth()).__dict__, "dpd_interval": 0})
    text = render_iked_conf(gw)
    assert "set dpd_check_interval 0\n" in text
    assert iked_check(text, tmp_path).returncode == 0


@pytest.mark.parametrize("role", ["active", "passive"])
def test_role_comment_says_only_what_this_side_does(role: Role) -> None:
    text = render_iked_conf(side("aws", 1, PubkeyAuth(), role))
    comments = " ".join(ln for ln in text.splitlines() if ln.startswith("#"))
    assert "Both sides initiate" not in comments
    assert ("This side initiates" in comments) == (role == "active")
    assert ("only answers (passive)" in comments) == (role == "passive")
