"""The config reference cannot drift: code keys, the reference list, the README and the stack files."""

from __future__ import annotations

import re

from cross_cloud_vpn.config_reference import REFERENCE, render_block, replace_block
from cross_cloud_vpn.stack_config import known_keys
from tests.conftest import REPO


def test_every_key_the_code_reads_is_documented_and_nothing_else() -> None:
    assert set(REFERENCE) == set(known_keys())
    assert len(known_keys()) == len(set(known_keys()))


def test_readme_table_is_the_generated_one() -> None:
    readme = (REPO / "README.md").read_text()
    assert render_block() in readme, "run: python -m cross_cloud_vpn.config_reference README.md"


def test_a_stale_readme_table_is_detected() -> None:
    readme = (REPO / "README.md").read_text()
    stale = readme.replace("| `aws.instanceType` |", "| `aws.instanceKind` |")
    assert render_block() not in stale
    assert replace_block(stale) == readme


def test_every_key_appears_in_a_committed_stack_file() -> None:
    text = (REPO / "Pulumi.dev.yaml").read_text() + (REPO / "Pulumi.prod.example.yaml").read_text()
    words = set(re.findall(r"[A-Za-z]+", text))
    missing = [k for k in known_keys() if k.rsplit(".", 1)[-1] not in words]
    assert not missing, f"keys with no line or comment in the stack files: {missing}"
