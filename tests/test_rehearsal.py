"""The rehearsal: the program's own pushed files, taken from its configure commands, run for real.

``test_plan_*`` run everywhere (no kernel needed); the ``lab`` tests boot user-mode Linux and
two real iked daemons, and need root and the Debian packages ``missing_tools`` names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from cross_cloud_vpn.lab.uml import missing_tools, run_rehearsal
from cross_cloud_vpn.openbsd import parse_bootstrap
from cross_cloud_vpn.rehearse import EXTRA_ADMIN_CIDR, build_plan, summary_line
from tests.conftest import DEV_STACK


def psk_three_cidrs_stack(tmp_path: Path) -> Path:
    document = yaml.safe_load(DEV_STACK.read_text())
    config = document["config"]
    config["cross-cloud-vpn:aws"]["workloadSubnetCidrs"] = [f"10.10.{i}.0/24" for i in (1, 2, 3)]
    config["cross-cloud-vpn:azure"]["workloadSubnetCidrs"] = [f"10.20.{i}.0/24" for i in (1, 2, 3)]
    config["cross-cloud-vpn:tunnel"]["authMode"] = "psk"
    path = tmp_path / "Pulumi.psk3.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_plan_takes_files_from_the_configure_commands_unchanged() -> None:
    plan = build_plan(DEV_STACK, "dev", 3, lambda _m: None)
    aws, azure = plan.gateways
    assert (aws.public_ip, azure.public_ip) == ("198.51.100.10", "203.0.113.20")
    assert f"local 10.10.0.10 peer {azure.public_ip}" in aws.iked_conf
    assert aws.files[f"/etc/iked/pubkeys/ipv4/{azure.public_ip}"].content.startswith("-----BEGIN PUBLIC KEY")
    assert plan.changed is not None and plan.changed[0].workload_cidrs == ("10.10.1.0/24", "10.10.2.0/24")
    assert "from 10.10.2.0/24 to 10.20.1.0/24" in plan.changed[0].iked_conf
    assert not plan.problems()


def test_plan_reconfigures_with_the_programs_own_bootstraps_that_leave_iked_conf_alone() -> None:
    plan = build_plan(DEV_STACK, "dev", 3, lambda _m: None)
    same, wider = plan.reconfigure
    for gateway, again, admin in zip(plan.gateways, same, wider, strict=True):
        assert parse_bootstrap(again).files["/etc/iked.conf"][0] == gateway.iked_conf
        pushed = parse_bootstrap(admin).files
        assert pushed["/etc/iked.conf"][0] == gateway.iked_conf
        assert EXTRA_ADMIN_CIDR in pushed["/etc/pf.conf"][0]
        assert EXTRA_ADMIN_CIDR not in gateway.files["/etc/pf.conf"].content
    assert "hitless_lost=0 " in summary_line({"hitless_lost": 0})


def test_plan_in_psk_mode_carries_the_same_psk_on_both_sides(tmp_path: Path) -> None:
    plan = build_plan(psk_three_cidrs_stack(tmp_path), "psk3", 3, lambda _m: None)
    psks = {line.strip(" \t\\") for g in plan.gateways for line in g.iked_conf.splitlines() if "psk" in line}
    assert len(psks) == 1 and plan.auth_mode == "psk"
    assert len([ln for ln in plan.gateways[0].iked_conf.splitlines() if ln.strip().startswith("from ")]) == 9


lab = pytest.mark.skipif(
    os.geteuid() != 0 or bool(missing_tools()),
    reason=f"needs root and Debian packages: {' '.join(missing_tools()) or '-'}",
)


@pytest.mark.lab
@lab
@pytest.mark.parametrize("stack", ["dev", "psk3"])
def test_program_configs_bring_up_a_real_tunnel_and_survive_faults(tmp_path: Path, stack: str) -> None:
    stack_file = DEV_STACK if stack == "dev" else psk_three_cidrs_stack(tmp_path)
    plan = build_plan(stack_file, stack, 10, print)
    result = run_rehearsal(plan, workdir=tmp_path, progress=print)
    print(summary_line(result))
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict | list)}))
    assert result["pings"]["a_to_b"] == [10, 10] and result["pings"]["b_to_a"] == [10, 10], result
    assert result["all_pairs_ok"], result
    assert result["cleartext"] == 0, result
    assert result["wrong_key_delivered"] == 0 and result["wrong_key_child_sas"] == 0, result
    assert result["wrong_key_cleartext"] == 0, result
    assert result["restart_s"] is not None and result["restart_s"] < 15, result
    assert result["change_ok"], result
    # A configure that leaves iked.conf alone restarts nothing and loses no ping.
    assert result["hitless_lost"] == 0 and result["hitless_iked_restarts"] == 0, result
    assert all(lines[0].endswith("changed: nothing; iked left running")
               for lines in result["hitless_status"].values()), result["hitless_status"]
    # The program's tunnel check, unchanged, fails the update while the key is wrong.
    assert all(code != 0 for code in result["wrong_key_check_exit"].values()), result
    assert all(out.startswith("tunnel: up\n") for out in result["tunnel_check"].values())
    assert result["ok"], result["failures"]
