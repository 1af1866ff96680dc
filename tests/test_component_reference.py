"""docs/components.md is the components' reference, generated from the code: it cannot drift."""

from __future__ import annotations

import re

from cross_cloud_vpn.component_reference import DOC, render


def test_component_reference_is_regenerated_from_the_code() -> None:
    assert DOC.read_text() == render(), "run: python -m cross_cloud_vpn.component_reference"


def test_every_input_output_and_type_field_in_the_reference_is_described() -> None:
    rows = [line for line in render().splitlines() if line.startswith("| `")]
    assert len(rows) > 60
    blank = [row.split("|")[1].strip() for row in rows if re.search(r"\|\s*\|\s*$", row)]
    assert not blank, f"no description for {blank}"
