"""The lab engine rehearses the real tunnel: two OpenIKED daemons in user-mode-linux.

The plans are built here by small helpers standing in for the Pulumi program's renderers.
Slow (a UML boot and ~1.5 min of rehearsal each); needs root and the Debian tools.
"""

from __future__ import annotations

import ipaddress
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cross_cloud_vpn.lab.guest import pcap_cleartext, wrong_psk
from cross_cloud_vpn.lab.keys import make_keypair, public_pem_of
from cross_cloud_vpn.lab.plan import GatewayPlan, LabPlan, PushedFile
from cross_cloud_vpn.lab.uml import missing_tools, run_rehearsal
from cross_cloud_vpn.openbsd import ConfigFile, render_bootstrap

AWS = {"public_ip": "198.51.100.10", "private_ip": "10.10.0.10", "gateway_subnet": "10.10.0.0/24"}
AZURE = {"public_ip": "203.0.113.20", "private_ip": "10.20.0.10", "gateway_subnet": "10.20.0.0/24"}
PSK = "lab-test-psk-0123456789abcdef"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces inside user-mode-linux)"
    missing = missing_tools()
    if missing:
        return "missing Debian packages: " + " ".join(missing)
    return None


needs_lab = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def render_iked_conf(
    name: str,
    local: dict[str, str],
    peer: dict[str, str],
    local_cidrs: tuple[str, ...],
    peer_cidrs: tuple[str, ...],
    auth: str,
) -> str:
    flows = " \\\n".join(f"\tfrom {lc} to {pc}" for lc in local_cidrs for pc in peer_cidrs)
    return (
        "set enforcesingleikesa\n"
        "set dpd_check_interval 30\n"
        f'ikev2 "{name}" active esp \\\n'
        f"{flows} \\\n"
        f"\tlocal {local['private_ip']} peer {peer['public_ip']} \\\n"
        "\tikesa enc aes-256-gcm prf hmac-sha2-256 group curve25519 \\\n"
        "\tchildsa enc aes-256-gcm group curve25519 \\\n"
        "\tchildsa enc aes-256 auth hmac-sha2-512 group curve25519 \\\n"
        f'\tsrcid "{local["public_ip"]}" dstid "{peer["public_ip"]}" \\\n'
        f"\t{auth}\n"
    )


def render_pf_conf(local_cidrs: tuple[str, ...], peer_cidrs: tuple[str, ...]) -> str:
    return "".join(
        f"block out quick from {lc} to {pc} flags any  # unless IPsec\n"
        for lc in local_cidrs
        for pc in peer_cidrs
    )


def gateway(
    name: str,
    me: dict[str, str],
    other: dict[str, str],
    cidrs: tuple[str, ...],
    other_cidrs: tuple[str, ...],
    auth_mode: str,
    my_key: tuple[str, str],
    other_pub: str,
) -> GatewayPlan:
    # rfc7427: the keys are ECDSA P-256 as OpenBSD's rc makes them; plain `rsa` signs only RSA.
    auth = "rfc7427" if auth_mode == "pubkey" else f'psk "{PSK}"'
    files = {
        "/etc/iked.conf": PushedFile(
            render_iked_conf(f"{name}-tunnel", me, other, cidrs, other_cidrs, auth), 0o600
        ),
        "/etc/pf.conf": PushedFile(render_pf_conf(cidrs, other_cidrs), 0o600),
        "/etc/sysctl.conf": PushedFile("net.inet.ip.forwarding=1\n", 0o644),
    }
    if auth_mode == "pubkey":
        files[f"/etc/iked/pubkeys/ipv4/{other['public_ip']}"] = PushedFile(other_pub, 0o644)
    return GatewayPlan(
        name=name,
        workload_cidrs=cidrs,
        files=files,
        private_key_pem=my_key[0],
        **me,
    )


def cidrs(base: str, n: int) -> tuple[str, ...]:
    net = ipaddress.IPv4Network(base)
    return tuple(str(s) for s in list(net.subnets(new_prefix=24))[1 : n + 1])


def make_plan(auth_mode: str, n_aws: int, n_azure: int, change: tuple[int, int] | None) -> LabPlan:
    ka, kb = make_keypair(), make_keypair()

    def pair(na: int, nb: int) -> tuple[GatewayPlan, GatewayPlan]:
        ca, cb = cidrs("10.10.0.0/16", na), cidrs("10.20.0.0/16", nb)
        return (
            gateway("aws", AWS, AZURE, ca, cb, auth_mode, ka, kb[1]),
            gateway("azure", AZURE, AWS, cb, ca, auth_mode, kb, ka[1]),
        )

    return LabPlan(
        auth_mode=auth_mode,
        gateways=pair(n_aws, n_azure),
        changed=pair(*change) if change else None,
        pings=10,
    )


def test_plan_json_round_trip() -> None:
    plan = make_plan("pubkey", 1, 1, (1, 2))
    again = LabPlan.from_json(plan.to_json())
    assert again == plan
    assert plan.problems() == []
    assert "PRIVATE KEY" not in repr(plan)
    assert plan.gateways[0].ip_forwarding()


def test_keypair_is_ecdsa_p256_made_like_openbsd_rc() -> None:
    private, public = make_keypair()
    # rc's `openssl ecparam -genkey` writes the curve's parameters, then the EC private key.
    assert private.startswith("-----BEGIN EC PARAMETERS-----") and "BEGIN EC PRIVATE KEY" in private
    assert public.startswith("-----BEGIN PUBLIC KEY-----")
    assert public_pem_of(private) == public
    text = subprocess.run(["openssl", "pkey", "-pubin", "-noout", "-text"], input=public,
                          capture_output=True, text=True, check=True).stdout
    assert "prime256v1" in text or "P-256" in text, text


def test_plan_refuses_a_reconfigure_round_that_changes_iked_conf() -> None:
    plan = make_plan("psk", 1, 1, None)
    a, b = plan.gateways

    def script(conf: str) -> str:
        return render_bootstrap([ConfigFile("/etc/iked.conf", conf, 0o600)], [])

    same = LabPlan(auth_mode="psk", gateways=plan.gateways, changed=None,
                   reconfigure=((script(a.iked_conf), script(b.iked_conf)),))
    assert same.problems() == [] and LabPlan.from_json(same.to_json()) == same
    other = LabPlan(auth_mode="psk", gateways=plan.gateways, changed=None,
                    reconfigure=((script(a.iked_conf + "# edit\n"), script(b.iked_conf)),))
    assert other.problems() == ["reconfigure round 1 [aws] changes iked.conf; that round must not"]


def test_plan_problems_are_reported() -> None:
    plan = make_plan("pubkey", 1, 1, None)
    a, b = plan.gateways
    bad = GatewayPlan(
        name=a.name,
        public_ip=a.public_ip,
        private_ip="10.99.0.1",
        gateway_subnet=a.gateway_subnet,
        workload_cidrs=b.workload_cidrs,
        files={},
        private_key_pem=a.private_key_pem,
    )
    problems = LabPlan(auth_mode="pubkey", gateways=(bad, b), changed=None).problems()
    assert any("not inside gateway_subnet" in p for p in problems)
    assert any("no /etc/iked.conf" in p for p in problems)
    assert any("overlaps" in p for p in problems)


def test_wrong_psk_changes_every_psk() -> None:
    conf = 'ikev2 "x" active esp from 10.1.0.0/24 to 10.2.0.0/24 peer 192.0.2.1 psk "s3cr\\"et"\n'
    wrong = wrong_psk(conf)
    assert wrong is not None and 'psk "s3cr\\"et-lab-wrong"' in wrong
    assert wrong_psk("ikev2 psk 0xdeadbeef\n") == 'ikev2 psk "0xdeadbeef-lab-wrong"\n'
    assert wrong_psk("ikev2 rsa\n") is None


def _ipv4(proto: int, payload: bytes, src: str = "192.0.2.1", dst: str = "192.0.2.2") -> bytes:
    hdr = struct.pack(
        ">BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        0,
        0,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return hdr + payload


def test_pcap_counts_cleartext_but_not_icmp_errors_about_ike(tmp_path: Path) -> None:
    udp_500 = _ipv4(17, struct.pack(">HHHH", 500, 500, 8, 0))
    icmp_err = _ipv4(1, bytes([3, 3, 0, 0, 0, 0, 0, 0]) + udp_500)
    echo = _ipv4(1, bytes([8, 0, 0, 0, 0, 1, 0, 1]) + b"x" * 8)
    eth = b"\x00" * 12 + b"\x08\x00"
    pcap = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for pkt in (icmp_err, echo):
        frame = eth + pkt
        pcap += struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame
    (tmp_path / "c.pcap").write_bytes(pcap)
    assert pcap_cleartext(tmp_path / "c.pcap") == (1, 1)


def _rehearse(plan: LabPlan, tmp_path: Path) -> dict[str, Any]:
    def progress(msg: str) -> None:
        print(f"lab: {msg}", file=sys.stderr, flush=True)

    result = run_rehearsal(plan, workdir=tmp_path, progress=progress, keep_logs=True)
    keys = (
        "tunnel_s",
        "pings",
        "all_pairs_ok",
        "cleartext",
        "ike_packets",
        "esp_packets",
        "guard_drops",
        "restart_s_each",
        "wrong_key_delivered",
        "wrong_key_child_sas",
        "change_ok",
        "guest_s",
        "wall_s",
    )
    print("lab figures:", {k: result.get(k) for k in keys}, file=sys.stderr)
    return result


def _assert_figures(r: dict[str, Any], pings: int) -> None:
    assert r["failures"] == [], r["failures"]
    assert r["ok"]
    assert r["tunnel_s"] is not None and r["tunnel_s"] < 30
    assert r["pings"] == {"a_to_b": [pings, pings], "b_to_a": [pings, pings]}
    assert r["all_pairs_ok"]
    assert r["cleartext"] == 0
    assert r["ike_packets"] > 0 and r["esp_packets"] > 0
    assert r["restart_s"] is not None and r["restart_s"] < 15
    assert r["wrong_key_delivered"] == 0
    assert r["wrong_key_child_sas"] == 0
    assert r["wrong_key_cleartext"] == 0


@pytest.mark.lab
@needs_lab
def test_pubkey_one_cidr_each_then_change(tmp_path: Path) -> None:
    plan = make_plan("pubkey", 1, 1, change=(1, 2))
    r = _rehearse(plan, tmp_path)
    _assert_figures(r, plan.pings)
    assert r["change_ok"] is True
    assert r["change_new_cidrs"] == ["azure:10.20.2.0/24"]


@pytest.mark.lab
@needs_lab
def test_psk_three_cidrs_each(tmp_path: Path) -> None:
    plan = make_plan("psk", 3, 3, change=(4, 3))
    r = _rehearse(plan, tmp_path)
    _assert_figures(r, plan.pings)
    assert r["change_ok"] is True
    assert r["change_new_cidrs"] == ["aws:10.10.4.0/24"]
