"""mypy over the whole ``cross_cloud_vpn`` package, the subpackages mapped in from the top level included.

``pyproject.toml`` maps ``components/``, ``openbsd/`` and ``lab/`` into ``cross_cloud_vpn`` with
setuptools' ``package-dir``; an editable install finds them through an import hook, which mypy
does not run. So this hands mypy each mapped file with its installed module name
(``components/gateway_pair.py`` is ``cross_cloud_vpn.components.gateway_pair``): the per-module
options in ``pyproject.toml`` (strict for ``cross_cloud_vpn.openbsd.*`` ...) apply by those names,
and the errors name the real files. Arguments are passed on to mypy (``--no-incremental`` ...).

Usage, from the repository root: ``python3 .ci/typecheck.py``. Exit status 0 when clean.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

REPO = Path(__file__).resolve().parent.parent


def mapped_sources() -> Iterator[BuildSource]:
    """Every module of each ``package-dir`` mapping, named as installed."""
    mapping: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    for package, folder in sorted(mapping.items()):
        for path in sorted((REPO / folder).glob("*.py")):
            module = package if path.name == "__init__.py" else f"{package}.{path.stem}"
            yield BuildSource(str(path.relative_to(REPO)), module, None, base_dir=str(REPO))


def main(argv: list[str]) -> int:
    sources, options = process_options(["-p", "cross_cloud_vpn", *argv])
    sources += mapped_sources()
    try:
        result = build.build(sources, options)
    except CompileError as err:  # syntax errors and the like
        messages = err.messages
    else:
        messages = result.errors
    for line in messages:
        print(line)
    checked = len(sources)
    print(f"{'Found ' + str(len(messages)) + ' errors' if messages else 'Success: no issues'} "
          f"in {checked} source files (cross_cloud_vpn and its mapped subpackages)")
    return 1 if messages else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
