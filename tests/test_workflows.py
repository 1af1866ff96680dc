"""The GitHub workflows: valid against GitHub's workflow schema (offline), OIDC-only credentials.

``check-jsonschema --builtin-schema vendor.github-workflows`` validates with the schema that
ships inside the check-jsonschema wheel, so no network is needed (as root on Linux the check
runs in a network namespace of its own, which proves it). A broken copy of each workflow must
be rejected, so a green run means the check really ran.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
TEST_WF, PREVIEW_WF = WORKFLOWS / "test.yml", WORKFLOWS / "preview.yml"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("check_jsonschema") is None,
    reason="check-jsonschema is not installed (pip install -e '.[dev]')",
)


def _offline_prefix() -> list[str]:
    """``unshare -n`` (no network at all) when we may; the check needs none either way."""
    unshare = shutil.which("unshare")
    if unshare and os.geteuid() == 0 and subprocess.run(
        [unshare, "-n", "true"], capture_output=True
    ).returncode == 0:
        return [unshare, "-n"]
    return []


def check_workflow(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_offline_prefix(), sys.executable, "-m", "check_jsonschema",
         "--builtin-schema", "vendor.github-workflows", "--color", "never", str(path)],
        capture_output=True, text=True, timeout=120,
    )


def load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    assert isinstance(on, dict), on
    return on


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


@pytest.mark.parametrize("path", [TEST_WF, PREVIEW_WF], ids=lambda p: p.name)
def test_workflow_is_valid_for_github(path: Path) -> None:
    result = check_workflow(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


def _drop_runs_on(text: str) -> str:
    return re.sub(r"(?m)^\s+runs-on:.*\n", "", text, count=1)


def _unknown_step_key(text: str) -> str:
    return text.replace("      - uses: actions/checkout@v4\n",
                        "      - uses: actions/checkout@v4\n        wiht:\n          fetch-depth: 1\n", 1)


def _unknown_trigger(text: str) -> str:
    return text.replace("on:\n", "on:\n  pull_requests:\n", 1)


@pytest.mark.parametrize("path", [TEST_WF, PREVIEW_WF], ids=lambda p: p.name)
@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (_drop_runs_on, "'runs-on' is a required property"),
        (_unknown_step_key, "'wiht' was unexpected"),
        (_unknown_trigger, "pull_requests"),
    ],
    ids=["runs-on-missing", "unknown-step-key", "unknown-trigger"],
)
def test_a_broken_copy_is_rejected(path: Path, breakage: Any, expected: str, tmp_path: Path) -> None:
    text = path.read_text()
    broken_text = breakage(text)
    assert broken_text != text, "the breakage must change the file"
    broken = tmp_path / path.name
    broken.write_text(broken_text)
    result = check_workflow(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stdout + result.stderr


def test_test_workflow_runs_the_ci_script_on_push_and_pull_request() -> None:
    wf = load(TEST_WF)
    assert set(triggers(wf)) >= {"push", "pull_request"}
    all_steps = steps(wf)
    uses = [s.get("uses", "") for s in all_steps]
    assert any(u.startswith("actions/checkout@") for u in uses)
    # Debian with Python 3.11, as root and privileged: apt and the namespace lab need both.
    container = wf["jobs"]["test"]["container"]
    assert container["image"] == "python:3.11-bookworm" and "--privileged" in container["options"]
    runs = "\n".join(s.get("run", "") for s in all_steps)
    assert re.search(r"^bash \.ci/run$", runs, flags=re.MULTILINE), runs
    # .ci/run holds what CI runs, so a local `sudo bash .ci/run` is the same check.
    ci = (REPO / ".ci" / "run").read_text()
    for command in ("apt-get install", "pip install -q --disable-pip-version-check -e '.[dev]'",
                    "ruff check .", "python3 .ci/typecheck.py", "python3 -m pytest"):
        assert command in ci, command


def test_preview_workflow_uses_oidc_and_stores_no_credential() -> None:
    wf = load(PREVIEW_WF)
    assert set(triggers(wf)) == {"pull_request"}
    perms = wf["permissions"]
    assert perms == {"id-token": "write", "contents": "read", "pull-requests": "write"}
    by_action = {s["uses"].split("@")[0]: s for s in steps(wf) if "uses" in s}

    aws = by_action["aws-actions/configure-aws-credentials"]["with"]
    assert aws["role-to-assume"] == "${{ vars.AWS_PREVIEW_ROLE_ARN }}"
    assert not {"aws-access-key-id", "aws-secret-access-key", "aws-session-token"} & set(aws)

    azure = by_action["azure/login"]["with"]
    assert set(azure) == {"client-id", "tenant-id", "subscription-id"}  # no client secret, no creds JSON
    assert all(re.fullmatch(r"\$\{\{ vars\.[A-Z_]+ \}\}", v) for v in azure.values()), azure

    pulumi = by_action["pulumi/actions"]
    assert pulumi["uses"] == "pulumi/actions@v6"
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["comment-on-pr"] is True
    assert re.fullmatch(r"\$\{\{ vars\.[A-Z_]+ \}\}/dev", pulumi["with"]["stack-name"])

    job_env = {k: v for job in wf["jobs"].values() for k, v in job.get("env", {}).items()}
    assert job_env["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    assert job_env.get("ARM_USE_OIDC") == "true"
    assert "ARM_CLIENT_SECRET" not in job_env


SENSITIVE_NAME = re.compile(r"(token|secret|password|private-key|access-key|_KEY$|credential|creds|"
                            r"client-id|tenant-id|subscription-id|role-to-assume|_ID$)", re.IGNORECASE)
LITERALS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),                                   # AWS access key id
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"ssh-(rsa|ed25519) AAAA"),
    re.compile(r"\bpul-[0-9a-f]{40}\b"),                               # Pulumi access token
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),                      # GitHub token
    re.compile(r"arn:aws:iam::\d{12}:"),
    re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE),
]


def _walk(node: Any, path: str = "") -> list[tuple[str, str, Any]]:
    if isinstance(node, dict):
        return [item for k, v in node.items() for item in [(path, str(k), v), *_walk(v, f"{path}.{k}")]]
    if isinstance(node, list):
        return [item for i, v in enumerate(node) for item in _walk(v, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("path", [TEST_WF, PREVIEW_WF], ids=lambda p: p.name)
def test_no_credential_literal(path: Path) -> None:
    text = path.read_text()
    for pattern in LITERALS:
        assert not pattern.search(text), f"{path.name}: {pattern.pattern}"
    for where, key, value in _walk(load(path)):
        if SENSITIVE_NAME.search(key) and isinstance(value, str | int) and key != "id-token":
            assert re.fullmatch(r"\$\{\{ (vars|secrets)\.[A-Z_]+( \|\| '[a-z0-9-]+')? \}\}", str(value)), \
                f"{path.name}{where}.{key} = {value!r}: credentials come from vars/secrets only"


def test_credential_scan_catches_a_literal(tmp_path: Path) -> None:
    leaked = PREVIEW_WF.read_text().replace(
        "role-to-assume: ${{ vars.AWS_PREVIEW_ROLE_ARN }}",
        "role-to-assume: arn:aws:iam::123456789012:role/preview",
    )
    assert leaked != PREVIEW_WF.read_text()
    copy = tmp_path / "preview.yml"
    copy.write_text(leaked)
    with pytest.raises(AssertionError, match="arn:aws:iam"):
        test_no_credential_literal(copy)
