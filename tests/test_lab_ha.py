"""The HA rehearsal: four gateways with real iked and real OpenBGPD, faults one at a time.

The fast tests check what the rehearsal is built from (every file it runs goes through the real
parsers) and how it measures. The lab test boots user-mode-linux and takes about 5 minutes, so
it runs only when asked: `CCVPN_HA_LAB=1 python3 -m pytest -m lab tests/test_lab_ha.py` (as
root); CI skips it and `benchmarks/bench_ha.py` prints its figures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cross_cloud_vpn.lab.ha import (
    FAULTS,
    GATEWAYS,
    HaPlan,
    ha_plan,
    missing_ha_tools,
    run_ha_rehearsal,
    summary_line,
)
from cross_cloud_vpn.lab.ha_guest import max_gap

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
    assert summary_line({"ok": False, "failures": ["x"]}).startswith("ha: FAILED")


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
    assert r["route_server_prefixes"] == ["10.20.1.0/24"], "the route server must hold only the Azure prefix"
    assert all(r["child_sas"].values()), r["child_sas"]
