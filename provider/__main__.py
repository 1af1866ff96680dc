"""Component provider host of cross-cloud-vpn: the plugin behind ``pulumi package add``.

Pulumi's python language host runs this folder (``python provider <engine address>``) in the
plugin's virtualenv. The package is imported from the checkout this folder belongs to (its
subpackages from the top-level folders ``pyproject.toml`` maps in), so a ``pulumi package add``
of a git tag serves exactly that tag's components; the schema is inferred from the components'
type annotations by ``pulumi.provider.experimental``.
"""

import importlib.util
import sys
import tomllib
from importlib.machinery import ModuleSpec
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if (REPO / "cross_cloud_vpn" / "__init__.py").is_file() and str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


class CheckoutSubpackages:
    """``cross_cloud_vpn.components`` (etc.) from the checkout's top-level folders, as
    ``pyproject.toml``'s ``package-dir`` maps them: the plugin's virtualenv holds only the
    dependencies, not the editable install whose import hook does this otherwise."""

    def __init__(self, repo: Path) -> None:
        setuptools = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
        self.folders = {name: repo / folder for name, folder in setuptools["package-dir"].items()}

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> ModuleSpec | None:
        folder = self.folders.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)])


# Last on the path: an installed import hook for this same checkout answers first.
sys.meta_path.append(CheckoutSubpackages(REPO))

import inspect  # noqa: E402

import pulumi  # noqa: E402
from pulumi.provider.experimental import component_provider_host  # noqa: E402

from cross_cloud_vpn import components  # noqa: E402

NAME = "cross-cloud-vpn"
#: Every ComponentResource that cross_cloud_vpn.components exports, by name.
COMPONENTS: list[type[pulumi.ComponentResource]] = sorted(
    {v for v in vars(components).values() if inspect.isclass(v) and issubclass(v, pulumi.ComponentResource)},
    key=lambda c: c.__name__,
)


def version() -> str:
    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


if __name__ == "__main__":
    component_provider_host(COMPONENTS, name=NAME, version=version())
