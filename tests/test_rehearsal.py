"""The rehearsal: the program's own pushed files, taken from its configure commands, run for real.

``test_plan_*`` and the command's tests run everywhere (no kernel needed: the lab run is
replaced where the command would boot it); the ``lab`` tests boot user-mode Linux and two real
iked daemons, and need root and the Debian packages ``missing_tools`` names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from cross_cloud_vpn import rehearse
from cross_cloud_vpn.lab.keys import public_pem_of
from cross_cloud_vpn.lab.plan import LabPlan
from cross_cloud_vpn.lab.uml import TOOLS, missing_tools, run_rehearsal
from cross_cloud_vpn.lab_cloud import evaluate
from cross_cloud_vpn.openbsd import parse_bootstrap
from cross_cloud_vpn.rehearse import (
    EXIT_CANNOT_RUN,
    EXIT_FAILED,
    EXIT_OK,
    EXTRA_ADMIN_CIDR,
    Refused,
    build_plan,
    human_summary,
    plan_for_program,
    program_from_file,
    program_values,
    summary_line,
)
from tests.conftest import DEV_STACK, REPO


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


EXAMPLE = "example:"
IMAGE_ID = "/subscriptions/0/resourceGroups/img/providers/Microsoft.Compute/images/obsd"


def example_stack(tmp_path: Path, ssh_public_key: str) -> Path:
    """A user's stack file for examples/new_networks.py: the SSH private key encrypted, as
    `pulumi config set --secret` leaves it."""
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump({"config": {
        EXAMPLE + "sshPublicKey": ssh_public_key,
        EXAMPLE + "sshPrivateKey": {"secure": "AAABAHhMdXo1bGFiLW9ubHktY2lwaGVydGV4dA=="},
        EXAMPLE + "adminCidr": "192.0.2.0/24",
        EXAMPLE + "amiId": "ami-0123456789abcdef0",
        EXAMPLE + "azureImageId": IMAGE_ID,
    }}))
    return path


def users_plan(program: Path, stack_file: Path) -> tuple[LabPlan, dict[str, str], list[str]]:
    values, secrets = program_values(stack_file, {})
    plan = plan_for_program(program_from_file(program), values, sorted(secrets), pings=3)
    return plan, values, sorted(secrets)


def test_plan_for_a_users_program_takes_each_gateways_files_from_its_configure_command(
    tmp_path: Path, ssh_keypair: tuple[str, str]
) -> None:
    program = REPO / "examples" / "new_networks.py"
    plan, values, secrets = users_plan(program, example_stack(tmp_path, ssh_keypair[0]))
    aws, azure = plan.gateways
    assert (aws.name, aws.public_ip, aws.private_ip, aws.gateway_subnet, aws.workload_cidrs) == \
        ("aws", "198.51.100.10", "10.10.0.10", "10.10.0.0/24", ("10.10.1.0/24",))
    assert (azure.name, azure.public_ip, azure.private_ip, azure.gateway_subnet, azure.workload_cidrs) == \
        ("azure", "203.0.113.20", "10.20.0.10", "10.20.0.0/24", ("10.20.1.0/24",))
    assert plan.auth_mode == "pubkey" and plan.changed is None and not plan.problems()
    # The same program with the same (lab-made) gateway keys pushes exactly the plan's files.
    keys = {g.name: public_pem_of(g.private_key_pem) for g in plan.gateways}
    again = evaluate(program_from_file(program), values, secrets, public_keys=keys)
    planned = [{p: (f.content, f.mode) for p, f in g.files.items() if p != "/etc/sysctl.conf"}
               for g in plan.gateways]
    for gateway, files in zip(plan.gateways, planned, strict=True):
        pushed = parse_bootstrap(again.named(f"vpn-{gateway.name}-configure").inputs["stdin"])
        assert files == pushed.files, gateway.name
    assert plan.check_script == again.named("vpn-aws-check").inputs["stdin"]
    assert [parse_bootstrap(script).files for script in plan.reconfigure[0]] == planned


def dashed_sites_program(tmp_path: Path) -> Path:
    """examples/new_networks.py with the pair's sides named "aws-eu" and "on-prem-dc"."""
    source = (REPO / "examples" / "new_networks.py").read_text()
    renamed = source.replace("left=aws_site.endpoint()", 'left=aws_site.endpoint(site="aws-eu")').replace(
        "right=azure_site.endpoint()", 'right=azure_site.endpoint(site="on-prem-dc")')
    assert renamed.count('site="') == 2, "examples/new_networks.py no longer joins site.endpoint() pairs"
    program = tmp_path / "__main__.py"
    program.write_text(renamed)
    return program


def test_plan_for_a_pair_whose_site_names_hold_dashes_gives_each_gateway_its_own_key(
    tmp_path: Path, ssh_keypair: tuple[str, str]
) -> None:
    plan, _, _ = users_plan(dashed_sites_program(tmp_path), example_stack(tmp_path, ssh_keypair[0]))
    a, b = plan.gateways
    assert (a.name, b.name) == ("aws-eu", "on-prem-dc")
    # Each side holds the other's public key: the one the lab made for that very site.
    assert a.files[f"/etc/iked/pubkeys/ipv4/{b.public_ip}"].content == public_pem_of(b.private_key_pem)
    assert b.files[f"/etc/iked/pubkeys/ipv4/{a.public_ip}"].content == public_pem_of(a.private_key_pem)


def test_users_stack_file_with_another_encrypted_value_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump({"config": {"example:amiId": {"secure": "AAAB"}}}))
    with pytest.raises(Refused, match=r"example:amiId encrypted .* --config KEY=VALUE"):
        program_values(path, {})
    assert program_values(path, {"example:amiId": "ami-1"})[0] == {"example:amiId": "ami-1"}


def test_byo_stack_file_is_refused_with_why_and_what_to_rehearse_instead() -> None:
    why = r"brings its own networks \(aws.vpcId, azure.vnetId\).*Pulumi.dev.yaml"
    with pytest.raises(Refused, match=why):
        build_plan(REPO / "Pulumi.prod.example.yaml", "prod", 3, lambda _m: None)


@pytest.fixture()
def fake_lab(monkeypatch: pytest.MonkeyPatch) -> list[LabPlan]:
    """The command as root with every package, its lab run replaced: it records the plan and
    answers the figures of a passing run."""
    seen: list[LabPlan] = []

    def run(plan: LabPlan, **_kw: object) -> dict[str, object]:
        seen.append(plan)
        return dict(PASSING)

    monkeypatch.setattr(rehearse, "missing_tools", lambda: [])
    monkeypatch.setattr(rehearse.os, "geteuid", lambda: 0)
    monkeypatch.setattr(rehearse, "run_rehearsal", run)
    return seen


PASSING: dict[str, object] = {
    "ok": True, "failures": [], "tunnel_s": 9.55, "pings": {"a_to_b": [10, 10], "b_to_a": [10, 10]},
    "all_pairs_ok": True, "cleartext": 0, "ike_packets": 40, "esp_packets": 900,
    "tunnel_check": {"aws": "tunnel: up\n", "azure": "tunnel: up\n"}, "hitless_lost": 0,
    "hitless_pings": [80, 80], "hitless_iked_restarts": 0, "restart_s": 6.99,
    "restart_s_each": {"aws": 5.1, "azure": 6.99}, "wrong_key_delivered": 0, "wrong_key_child_sas": 0,
    "wrong_key_check_exit": {"aws": 1, "azure": 1}, "change_ok": True, "change_new_cidrs": ["10.10.2.0/24"],
    "wall_s": 125.4,
}


def test_command_prints_a_summary_for_a_person_and_the_figures_only_to_the_json_file(
    fake_lab: list[LabPlan], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)
    assert rehearse.main(["--pings", "3", "--json", str(tmp_path / "figures.json")]) == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == summary_line(PASSING) and out[-1].startswith("rehearsal: ok tunnel_s=9.55 ")
    assert out[0].startswith("Rehearsal of aws (198.51.100.10) <-> azure (203.0.113.20), pubkey mode: "
                             "every check passed")
    assert not any(line.lstrip().startswith(("{", '"')) for line in out), "JSON went to stdout"
    assert json.loads((tmp_path / "figures.json").read_text())["tunnel_s"] == 9.55
    assert fake_lab[0].pings == 3 and fake_lab[0].changed is not None


def test_command_exits_1_and_says_which_check_failed_and_why(
    fake_lab: list[LabPlan], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = {**PASSING, "ok": False, "pings": {"a_to_b": [10, 7], "b_to_a": [10, 10]},
               "failures": ["pings a_to_b: 7/10 answered", "guest error: boom"]}
    monkeypatch.setattr(rehearse, "run_rehearsal", lambda plan, **_kw: failing)
    monkeypatch.chdir(REPO)
    assert rehearse.main([]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "  FAILED  pings           aws->azure 7/10, azure->aws 10/10" in out
    assert "why: pings a_to_b: 7/10 answered" in out and "boom" in out
    assert "  ok      tunnel          " in out and out.splitlines()[-1].startswith("rehearsal: FAILED ")


def test_command_rehearses_a_saved_plan_and_a_users_program(
    fake_lab: list[LabPlan], tmp_path: Path, ssh_keypair: tuple[str, str]
) -> None:
    plan = build_plan(DEV_STACK, "dev", 3, lambda _m: None)
    (tmp_path / "plan.json").write_text(plan.to_json())
    assert rehearse.main(["--plan", str(tmp_path / "plan.json")]) == EXIT_OK
    assert fake_lab[-1] == plan
    program = tmp_path / "project" / "__main__.py"
    program.parent.mkdir()
    program.write_text((REPO / "examples" / "new_networks.py").read_text())
    example_stack(program.parent, ssh_keypair[0])
    assert rehearse.main(["--program", str(program.parent), "--pings", "2"]) == EXIT_OK
    assert [g.name for g in fake_lab[-1].gateways] == ["aws", "azure"] and fake_lab[-1].pings == 2


@pytest.mark.parametrize(("argv", "why"), [
    (["--stack-file", str(REPO / "Pulumi.prod.example.yaml")], "brings its own networks (aws.vpcId"),
    (["--stack", "nosuch"], "no stack file Pulumi.nosuch.yaml"),
    (["--program", "/nonexistent/__main__.py"], "no Pulumi program at /nonexistent/__main__.py"),
])
def test_command_exits_2_naming_the_problem_with_its_input(
    fake_lab: list[LabPlan], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    argv: list[str], why: str
) -> None:
    monkeypatch.chdir(REPO)
    assert rehearse.main(argv) == EXIT_CANNOT_RUN
    assert why in capsys.readouterr().err
    assert not fake_lab


def test_command_exits_2_when_not_root_or_packages_are_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(rehearse, "missing_tools", lambda: ["openiked"])
    assert rehearse.main([]) == EXIT_CANNOT_RUN
    assert "apt-get install openiked" in capsys.readouterr().err
    monkeypatch.setattr(rehearse, "missing_tools", lambda: [])
    monkeypatch.setattr(rehearse.os, "geteuid", lambda: 1000)
    assert rehearse.main([]) == EXIT_CANNOT_RUN
    assert "needs root" in capsys.readouterr().err


def test_help_says_in_plain_words_what_it_needs_how_long_it_takes_and_the_exit_codes(
    capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        rehearse.main(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    packages = "openiked user-mode-linux iptables iproute2 tcpdump kmod iputils-ping openssl"
    for phrase in ("Needs: root", packages,
                   "about two minutes", "0 every check passed", "1 a rehearsal check failed",
                   "2 it cannot run here", "--program", "--plan", "--json"):
        assert phrase in text, phrase
    words = {word.strip(",.;()") for word in text.split()}
    assert set(TOOLS.values()) <= words, "--help must name every package missing_tools asks for"


def test_summary_names_a_check_that_did_not_run() -> None:
    plan = build_plan(DEV_STACK, "dev", 3, lambda _m: None)
    text = human_summary({"ok": False, "failures": ["rehearsal timed out after 900s"], "wall_s": 900.0}, plan)
    assert "  not run tunnel" in text and "  FAILED                  rehearsal timed out after 900s" in text


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


@pytest.mark.lab
@lab
def test_a_users_program_with_dashed_site_names_brings_up_a_real_tunnel(
    tmp_path: Path, ssh_keypair: tuple[str, str]
) -> None:
    plan, _, _ = users_plan(dashed_sites_program(tmp_path), example_stack(tmp_path, ssh_keypair[0]))
    result = run_rehearsal(plan, workdir=tmp_path, progress=print)
    print(human_summary(result, plan))
    assert result["pings"]["a_to_b"] == [3, 3] and result["pings"]["b_to_a"] == [3, 3], result
    assert result["cleartext"] == 0 and result["wrong_key_delivered"] == 0, result
    assert result["hitless_lost"] == 0 and result["hitless_iked_restarts"] == 0, result
    assert all(out.startswith("tunnel: up\n") for out in result["tunnel_check"].values())
    assert result["change_ok"] is None  # no config change for a user's program
    assert result["ok"], result["failures"]
