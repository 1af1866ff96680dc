"""The README's parts for the person deploying cannot drift from the code they describe."""

from __future__ import annotations

import ast
import re
import tomllib

import pytest

from tests.conftest import REPO

README = REPO / "README.md"


def _section(title: str) -> str:
    """The README text under the heading ``title``, up to the next heading of any level."""
    text = README.read_text()
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"README.md has no section {title!r}"
    return match.group(1)


def _returned_outputs(function: str) -> list[str]:
    """The keys of the dict literal ``function`` in cross_cloud_vpn/program.py returns: the stack
    outputs (``build``: one gateway per side; ``_ha_outputs``: HA mode)."""
    tree = ast.parse((REPO / "cross_cloud_vpn" / "program.py").read_text())
    body = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    returned = [
        n.value for n in ast.walk(body) if isinstance(n, ast.Return) and isinstance(n.value, ast.Dict)
    ]
    assert len(returned) == 1, f"{function}() should end in one `return {{...}}` of the stack outputs"
    keys = [k.value for k in returned[0].keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    assert len(keys) == len(returned[0].keys), "every stack output should be named by a string literal"
    return keys


@pytest.mark.parametrize(("function", "section"), [
    ("build", "Stack outputs"),
    ("_ha_outputs", "Stack outputs in HA mode"),
])
def test_every_stack_output_is_in_the_readme_outputs_table_and_nothing_else(
    function: str, section: str
) -> None:
    documented = re.findall(r"^\| `([a-z0-9_]+)` \|", _section(section), re.MULTILINE)
    outputs = _returned_outputs(function)
    assert outputs, f"{function}() returned no outputs"
    missing = [o for o in outputs if o not in documented]
    stale = [d for d in documented if d not in outputs]
    assert not missing, f"stack outputs with no row in README {section!r}: {missing}"
    assert not stale, f"README {section!r} rows for outputs {function}() does not return: {stale}"
    assert len(documented) == len(set(documented)), "an output is documented twice"


def test_the_readme_dependency_floor_is_pyprojects() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    expected = {f"Python `{project['requires-python']}`", *(f"`{d}`" for d in project["dependencies"])}
    listed = set(re.findall(r"^- (.+)$", _section("What this package asks of a host project"), re.MULTILINE))
    assert listed == expected, (
        f"README 'What this package asks of a host project' lists {sorted(listed)}, "
        f"pyproject.toml requires {sorted(expected)}"
    )
