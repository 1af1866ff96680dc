"""The HA rehearsal: four gateways with real iked and real OpenBGPD, faults one at a time.

The fast tests check what the rehearsal is built from (every file it runs goes through the real
parsers) and how it measures. The lab test boots user-mode-linux and takes about 5 minutes, so
it runs only when asked: `CCVPN_HA_LAB=1 python3 -m pytest -m lab tests/test_lab_ha.py` (as
root); CI skips it and `benchmarks/bench_ha.py` prints its figures.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from cross_cloud_vpn.lab.ha import (
    AWS_REGION,
    FAULTS,
    GATEWAYS,
    ROUTE_TABLE_IDS,
    HaPlan,
    ha_plan,
    missing_ha_tools,
    run_ha_rehearsal,
    summary_line,
)
from cross_cloud_vpn.lab.ha_aws import FakeAws, make_instance
from cross_cloud_vpn.lab.ha_guest import max_gap
from cross_cloud_vpn.openbsd import bgp_established_command
from cross_cloud_vpn.openbsd.steer import STEER_SCRIPT_PATH

BGPD = shutil.which("bgpd", path="/usr/sbin:/usr/bin")
IKED = shutil.which("iked", path="/usr/sbin:/usr/bin")


def _check(tool: str | None, text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if tool is None:
        pytest.skip("openbgpd/openiked not installed")
    path = tmp_path / "conf"
    path.write_text(text)
    path.chmod(0o600)
    return subprocess.run([tool, "-n", "-f", str(path)], capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def plan() -> HaPlan:
    return ha_plan()


@pytest.mark.parametrize("name", sorted(GATEWAYS))
def test_every_file_the_rehearsal_runs_passes_the_real_parsers(plan: HaPlan, name: str,
                                                               tmp_path: Path) -> None:
    files = plan.gateways[name].files
    for tool, path in ((BGPD, "/etc/bgpd.conf"), (IKED, "/etc/iked.conf")):
        result = _check(tool, files[path].content, tmp_path)
        assert result.returncode == 0, f"{name} {path}:\n{files[path].content}\n{result.stderr}"


def test_route_server_stand_in_passes_real_bgpd_parser(plan: HaPlan, tmp_path: Path) -> None:
    result = _check(BGPD, plan.route_server_conf, tmp_path)
    assert result.returncode == 0, f"{plan.route_server_conf}\n{result.stderr}"


def test_each_pair_joins_an_and_bn_with_its_bgp_host_flow(plan: HaPlan) -> None:
    for n in "12":
        a, b = plan.gateways[f"a{n}"], plan.gateways[f"b{n}"]
        assert f"from {a.private_ip} to {b.private_ip} \\" in a.iked_conf, a.iked_conf
        assert f"from {b.private_ip} to {a.private_ip} \\" in b.iked_conf, b.iked_conf
        assert f"peer {b.public_ip}" in a.iked_conf and f"peer {a.public_ip}" in b.iked_conf
    assert "prepend-self" in plan.gateways["a2"].files["/etc/bgpd.conf"].content
    assert "prepend-self" not in plan.gateways["a1"].files["/etc/bgpd.conf"].content
    assert all("route-servers" not in plan.gateways[b].files["/etc/bgpd.conf"].content for b in ("b1", "b2"))


def test_plan_survives_its_trip_into_the_guest(plan: HaPlan) -> None:
    again = HaPlan.from_json(plan.to_json())
    assert again == plan
    assert all("PRIVATE KEY-----" in g.private_key_pem for g in again.gateways.values())


@pytest.fixture(scope="module")
def rt_plan() -> HaPlan:
    return ha_plan("route-tables")


@pytest.mark.parametrize("name", sorted(GATEWAYS))
def test_route_table_plan_runs_bgpd_without_route_servers_and_the_real_parsers_take_it(
        rt_plan: HaPlan, name: str, tmp_path: Path) -> None:
    files = rt_plan.gateways[name].files
    bgpd = files["/etc/bgpd.conf"].content
    assert "route-server" not in bgpd and "prepend" not in bgpd
    for tool, path in ((BGPD, "/etc/bgpd.conf"), (IKED, "/etc/iked.conf")):
        result = _check(tool, files[path].content, tmp_path)
        assert result.returncode == 0, f"{name} {path}:\n{files[path].content}\n{result.stderr}"
    assert (STEER_SCRIPT_PATH in files) == (name[0] == "a")
    assert rt_plan.route_server_conf == "" and HaPlan.from_json(rt_plan.to_json()) == rt_plan


def test_route_table_plan_runs_the_script_the_program_pushes_primary_a1_standby_a2(rt_plan: HaPlan) -> None:
    """The text is render_gateway's (route-tables mode, the values gateway_pair.py passes): A1
    primary probing A2, A2 standby probing A1, each healthy while its own tunnel's BGP session
    is up; the real defaults for health, IMDS and fetch are in the script."""
    for name, partner, role, peer in (("a1", "a2", "primary", "b1"), ("a2", "a1", "standby", "b2")):
        script = rt_plan.gateways[name].files[STEER_SCRIPT_PATH].content
        assert f"role='{role}'" in script
        assert f"partner_url='http://{GATEWAYS[partner][0]}:8080/up'" in script
        assert f"health_default='{bgp_established_command(GATEWAYS[peer][0])}'" in script
        assert f"tables='{ROUTE_TABLE_IDS[0]}'" in script and "cidrs='10.20.1.0/24'" in script
        assert f"region='{AWS_REGION}'" in script and "interval='2'" in script and "misses_max=2" in script
        subprocess.run(["sh", "-n"], input=script, text=True, check=True)


def _presigned(instance_key: str, secret: str, token: str, host: str, params: dict[str, str],
               when: datetime.datetime) -> str:
    request = AWSRequest(method="GET", url=f"http://{host}/", params=params)
    auth = SigV4QueryAuth(Credentials(instance_key, secret, token), "ec2", AWS_REGION, expires=60)
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        auth.add_auth(request)
    return urlsplit(str(request.url)).query


def test_fake_ec2_takes_only_botocore_signatures_and_moves_the_route() -> None:
    """The lab's fake EC2 (lab/ha_aws.py): a URL botocore presigns with A2's credentials is
    accepted and moves the route; the same URL with a changed parameter, another gateway's
    token or an old date is refused and changes nothing."""
    a1 = make_instance("a1", "10.10.0.10", "0a:00:00:00:00:a1", "eni-0a1c0000000000a01")
    a2 = make_instance("a2", "10.10.0.11", "0a:00:00:00:00:a2", "eni-0a1c0000000000a02")
    moved: list[tuple[str, str]] = []
    fake = FakeAws({"a1": a1, "a2": a2}, AWS_REGION, list(ROUTE_TABLE_IDS), "10.10.0.0/16",
                   lambda cidr, eni: moved.append((cidr, eni)))
    fake.routes[(ROUTE_TABLE_IDS[0], "10.20.1.0/24")] = a1.eni
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    replace = {"Action": "ReplaceRoute", "DestinationCidrBlock": "10.20.1.0/24", "NetworkInterfaceId": a2.eni,
               "RouteTableId": ROUTE_TABLE_IDS[0], "Version": "2016-11-15"}
    good = _presigned(a2.access_key, a2.secret, a2.token, "10.10.0.240", replace, now)
    for bad in (good.replace("eni-0a1c0000000000a02", "eni-0a1c0000000000a01"),
                _presigned(a2.access_key, a2.secret, a1.token, "10.10.0.240", replace, now),
                _presigned(a2.access_key, a2.secret, a2.token, "10.10.0.240", replace,
                           now - datetime.timedelta(minutes=10))):
        assert fake.ec2("10.10.0.240", bad)[0] in (400, 401)
    assert moved == [] and fake.summary()["ec2_rejected"] == 3
    code, body = fake.ec2("10.10.0.240", good)
    assert code == 200 and "<return>true</return>" in body
    assert moved == [("10.20.1.0/24", a2.eni)]
    summary = fake.summary()
    assert summary["takeovers"] == 1 and summary["failbacks"] == 0
    assert fake.imds("10.10.0.11", "/latest/meta-data/mac") == (200, a2.mac)
    assert fake.imds("10.10.0.11", f"/latest/meta-data/network/interfaces/macs/{a2.mac}/interface-id") \
        == (200, a2.eni)
    assert fake.imds("10.10.0.99", "/latest/meta-data/mac")[0] == 404


def test_gap_is_the_longest_silence_overlapping_the_window() -> None:
    arrivals = [0.0, 0.2, 0.4, 3.9, 4.1, 4.3, 9.0, 9.2]
    assert max_gap(arrivals, 0.3, 4.2) == 3.5  # the silence that starts before the fault counts
    assert max_gap(arrivals, 4.0, 4.2) == 0.2  # nothing lost: the stream's own interval
    assert max_gap(arrivals, 5.0, 10.0) == 4.7  # a silence still going when the window ends
    assert max_gap(arrivals, 9.5, 10.0) is None  # nothing arrived after the fault: no figure


def test_summary_line_reports_each_fault_both_ways_and_cleartext() -> None:
    faults = {label: {"gap_a_to_b_s": 3.2, "gap_b_to_a_s": 7.9, "failback_a_to_b_s": 0.2,
                      "failback_b_to_a_s": 0.4} for label, _, _ in FAULTS[:1]}
    line = summary_line({"ok": True, "failover_max_s": 7.9, "faults": faults, "cleartext": 0})
    assert line == ("ha: ok failover_max_s=7.9 per-fault a->b/b->a a1_iked_stopped=3.2/7.9(back 0.2/0.4), "
                    "cleartext=0")
    line = summary_line({"ok": True, "failover_max_s": 7.9, "faults": faults, "cleartext": 0,
                         "aws_steering": "route-tables"})
    assert line.endswith(", cleartext=0, steering=route-tables")
    assert summary_line({"ok": False, "failures": ["x"]}).startswith("ha: FAILED")


#: The issue's goal: traffic back within 10 s of any single fault.
GOAL_S = 10.0


def _lab_skip_reason() -> str | None:
    if os.environ.get("CCVPN_HA_LAB") != "1":
        return "about 5 minutes in user-mode-linux: set CCVPN_HA_LAB=1 to run it (benchmarks/bench_ha.py)"
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces inside user-mode-linux)"
    missing = missing_ha_tools()
    return f"missing Debian packages: {' '.join(missing)}" if missing else None


@pytest.mark.lab
@pytest.mark.skipif(_lab_skip_reason() is not None, reason=_lab_skip_reason() or "")
def test_every_single_fault_fails_over_and_back_with_no_cleartext(tmp_path: Path) -> None:
    r = run_ha_rehearsal(workdir=tmp_path, progress=print)
    print(summary_line(r))
    _assert_every_fault_failed_over_and_back(r)
    assert r["route_server_prefixes"] == ["10.20.1.0/24"], "the route server must hold only the Azure prefix"


@pytest.mark.lab
@pytest.mark.skipif(_lab_skip_reason() is not None, reason=_lab_skip_reason() or "")
def test_route_table_steering_fails_over_and_back_with_only_signed_ec2_calls(tmp_path: Path) -> None:
    """The program's steering script on A1 and A2 against the fake EC2: every EC2 call validly
    signed, the routes taken over by A2 and given back to A1, and the issue's goal (traffic back
    within 10 s of any single fault) in both directions.

    AWS->Azure is the tight one: A1's session loss (3 s hold) + the responder's check (1 s) +
    A2's two failed probes (rounds of 2 s) + A2's signed claim, which user-mode Linux slows to
    1.5-1.7 s (one slow CPU for every process of the four gateways). Before the standby kept its
    credentials and signing key ready and claimed without describing first, this lab measured
    10-16 s; since, 9.2-9.5 s (lab/README.md)."""
    r = run_ha_rehearsal(workdir=tmp_path, progress=print, aws_steering="route-tables")
    print(summary_line(r))
    print("EC2:", r.get("ec2_calls"), "claims:", r.get("ec2_claims"))
    for label, fault in r.get("faults", {}).items():
        print(label, {k: fault.get(k) for k in ("a1_unhealthy_s", "a2_decided_s", "a2_claimed_s",
                                                 "a2_credential_reads")})
    _assert_every_fault_failed_over_and_back(r)
    assert r["aws_steering"] == "route-tables"
    for label, fault in r["faults"].items():
        for direction in ("a_to_b", "b_to_a"):
            gap = fault[f"gap_{direction}_s"]
            assert gap <= GOAL_S, f"{label}: {direction} silent {gap} s"
    assert r["ec2_rejected"] == 0, r["ec2_rejected_why"]
    assert r["ec2_calls"].get("DescribeRouteTables", 0) > 0
    assert r["takeovers"] >= 1 and r["failbacks"] >= 1, r["ec2_claims"]
    for label in ("a1_iked_stopped", "a1_link_cut", "b1_iked_stopped"):
        during = r["faults"][label]["steering_during"]["a"]
        assert during == GATEWAYS["a2"][0], f"{label}: A2 did not take over ({during})"


def _assert_every_fault_failed_over_and_back(r: dict[str, Any]) -> None:
    pings = {k: (f["ping_gap_from_a_s"], f["ping_gap_from_b_s"]) for k, f in r.get("faults", {}).items()}
    print("ping gaps from AWS/Azure:", pings)
    assert r["failures"] == [], r["failures"]
    assert r["ok"]
    assert list(r["faults"]) == [label for label, _, _ in FAULTS]
    for label, fault in r["faults"].items():
        assert fault["resumed"], f"{label}: traffic did not resume both ways"
        for direction in ("a_to_b", "b_to_a"):
            for phase in ("gap", "failback"):
                assert fault[f"{phase}_{direction}_s"] is not None, f"{label}: no {direction} ({phase})"
        for src in "ab":
            assert fault[f"ping_gap_from_{src}_s"] is not None, f"{label}: no ping answered after the fault"
        assert fault["cleartext"] == 0, f"{label}: {fault['cleartext']} cleartext packets"
    assert r["cleartext"] == 0 and r["esp_packets"] > 0
    assert all(r["child_sas"].values()), r["child_sas"]
