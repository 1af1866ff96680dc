"""The built wheel and an editable install, each in a fresh virtualenv, serve another project.

The subpackages live at the top of the repository and are mapped into ``cross_cloud_vpn`` by
``pyproject.toml`` (setuptools ``package-dir``), never by links.

The wheel is built from a copy of the working tree (an in-tree ``pip wheel`` leaves ``build/``
and ``*.egg-info`` in the repository, and setuptools' ``build/lib`` keeps deleted modules). The
virtualenv sees the system site-packages so Pulumi and the providers need no download; the
outside program runs from a temporary folder with ``PYTHONPATH`` unset, and has to import the
wheel's copy, not this checkout (the checkout's editable install is on the system path too).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SUBPACKAGES = ("components", "openbsd", "lab")
COPY_IGNORE = shutil.ignore_patterns(
    ".git", "venv", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", ".benchmarks",
)

OUTSIDE_PROGRAM = textwrap.dedent(
    """
    import json
    import sys

    import cross_cloud_vpn.components as components_module
    from cross_cloud_vpn.components import AwsSite, AwsSiteArgs
    from cross_cloud_vpn.lab_cloud import evaluate
    from cross_cloud_vpn.openbsd import GatewaySpec, PskAuth, render_gateway, render_pf_conf

    def program():
        site = AwsSite(
            "outside-aws",
            AwsSiteArgs(
                vpc_cidr="10.30.0.0/16", gateway_subnet_cidr="10.30.0.0/24",
                workload_subnet_cidrs=["10.30.1.0/24"], remote_cidrs=["10.40.1.0/24"],
                admin_cidrs=["192.0.2.0/24"], ssh_public_key=sys.argv[2],
                ami_id="ami-0123456789abcdef0", gateway_private_ip="10.30.0.10",
            ),
        )
        return {"public_ip": site.public_ip, "cidrs": site.local_cidrs, "urn": site.urn}

    ev = evaluate(program, {}, set())
    rendered = render_gateway(GatewaySpec(
        site="aws", peer_site="azure", private_ip="10.30.0.10", public_ip="198.51.100.10",
        peer_public_ip="203.0.113.20", local_cidrs=["10.30.1.0/24"], remote_cidrs=["10.40.1.0/24"],
        admin_cidrs=["192.0.2.0/24"], auth=PskAuth("outside-program-psk-0123456789"),
    ))
    print(json.dumps({
        "components_file": components_module.__file__,
        "render_pf_conf": render_pf_conf.__module__,
        "types": sorted({r.type for r in ev.resources}),
        "parents_of_instances": sorted({r.parent for r in ev.by_type("aws:ec2/instance:Instance")}),
        "outputs": ev.outputs,
        "iked_conf_has_peer": "203.0.113.20" in rendered.iked_conf,
        "sys_path_has_repo": any(p.rstrip("/") == sys.argv[1] for p in sys.path),
    }))
    """
)

# Types come from the installed wheel: without py.typed, mypy reports [import-untyped] and
# treats AwsSite as Any, so the deliberate mistake below would go unnoticed.
TYPED_PROGRAM = textwrap.dedent(
    """
    import pulumi
    from cross_cloud_vpn.components import AwsSite
    from cross_cloud_vpn.openbsd import render_pf_conf

    def wrong(site: AwsSite) -> int:
        return site.public_ip  # deliberate: Output[str] is not int

    def right(site: AwsSite) -> pulumi.Output[str]:
        return site.public_ip

    TEXT: str = render_pf_conf.__name__
    """
)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot of the working tree (others may be editing it while the test runs)."""
    copy = tmp_path_factory.mktemp("src") / "cross-cloud-vpn"
    shutil.copytree(REPO, copy, symlinks=True, ignore=COPY_IGNORE)
    return copy


@pytest.fixture(scope="module")
def wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        check=True, capture_output=True, text=True, env=_clean_env(), timeout=180,
    )
    wheels = list(out.glob("cross_cloud_vpn-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv") / "v"
    assert REPO not in root.parents
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root)],
                   check=True, timeout=120)
    subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True, capture_output=True, text=True, env=_clean_env(), timeout=120,
    )
    return root


EDITABLE_PROBE = textwrap.dedent(
    """
    import importlib, json, sys

    files = {name: importlib.import_module(name).__file__ for name in sys.argv[1:]}
    from cross_cloud_vpn.openbsd import render_pf_conf
    from cross_cloud_vpn.lab.plan import LabPlan
    bare = []
    for name in ("components", "openbsd", "lab"):
        try:
            importlib.import_module(name)
            bare.append(name)
        except ImportError:
            pass
    print(json.dumps({"files": files, "pf_module": render_pf_conf.__module__,
                      "plan_module": LabPlan.__module__, "bare": bare}))
    """
)


def test_the_checkout_has_no_symlinks() -> None:
    tracked = subprocess.run(["git", "ls-files", "-s"], cwd=REPO, capture_output=True, text=True)
    if tracked.returncode:
        pytest.skip("not a git checkout")
    links = [line.split("\t", 1)[1] for line in tracked.stdout.splitlines() if line.startswith("120000 ")]
    assert not links, f"symlinks in the repository (a Windows checkout breaks on them): {links}"


def test_no_module_imports_a_mapped_folder_by_its_bare_name() -> None:
    """From the repository root a bare ``openbsd`` is importable too; a module imported both ways
    would load twice (two classes of each name, isinstance failing across them)."""
    bare = re.compile(rf"^\s*(from|import)\s+({'|'.join(SUBPACKAGES)})(\.|\s|$)", flags=re.MULTILINE)
    skip = {"venv", ".venv", "build", ".git", ".mypy_cache", ".ruff_cache"}
    found = [f"{path.relative_to(REPO)}: {m.group(0).strip()}" for path in sorted(REPO.rglob("*.py"))
             if not skip & set(path.relative_to(REPO).parts) for m in bare.finditer(path.read_text())]
    assert not found, found


def test_editable_install_in_a_fresh_venv_maps_the_top_level_folders_into_the_package(
    tmp_path: Path,
) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO, checkout, symlinks=True, ignore=COPY_IGNORE)
    root = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root)],
                   check=True, timeout=120)
    subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "-e", str(checkout)],
        check=True, capture_output=True, text=True, env=_clean_env(), timeout=300,
    )
    # Editable: a module added to a top-level folder after the install is importable at once.
    (checkout / "lab" / "added_after_install.py").write_text("ADDED = True\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "probe.py").write_text(EDITABLE_PROBE)
    modules = [f"cross_cloud_vpn.{sub}" for sub in SUBPACKAGES] + ["cross_cloud_vpn.lab.added_after_install"]
    result = subprocess.run(
        [str(root / "bin" / "python"), "probe.py", *modules],
        cwd=outside, env=_clean_env(), capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["files"] == {
        **{f"cross_cloud_vpn.{sub}": str(checkout / sub / "__init__.py") for sub in SUBPACKAGES},
        "cross_cloud_vpn.lab.added_after_install": str(checkout / "lab" / "added_after_install.py"),
    }, f"the editable install imported {seen['files']}, not the installed checkout's top-level folders"
    assert seen["pf_module"] == "cross_cloud_vpn.openbsd.pf"
    assert seen["plan_module"] == "cross_cloud_vpn.lab.plan"
    assert seen["bare"] == [], "no bare top-level package may be importable next to cross_cloud_vpn"


def test_wheel_holds_real_files_and_a_py_typed_per_package(wheel: Path, source: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        for package in ("cross_cloud_vpn", *(f"cross_cloud_vpn/{p}" for p in SUBPACKAGES)):
            assert f"{package}/py.typed" in infos, f"{package}/py.typed missing from {wheel.name}"
            assert f"{package}/__init__.py" in infos
        for sub in SUBPACKAGES:
            sources = sorted(p.name for p in (source / sub).glob("*.py"))
            in_wheel = sorted(n.rsplit("/", 1)[1] for n in infos if n.startswith(f"cross_cloud_vpn/{sub}/")
                              and n.endswith(".py"))
            assert in_wheel == sources, f"{sub}: wheel has {in_wheel}, folder has {sources}"
            for name in sources:
                info = infos[f"cross_cloud_vpn/{sub}/{name}"]
                assert not stat.S_ISLNK(info.external_attr >> 16), f"{info.filename} is a symlink"
                assert zf.read(info) == (source / sub / name).read_bytes(), f"{info.filename} differs"
        assert not [n for n in infos if n.startswith(("components/", "openbsd/", "lab/", "tests/"))], \
            "no bare top-level package may be installed next to cross_cloud_vpn"


def test_outside_program_imports_the_installed_wheel_and_registers_an_aws_site(
    venv: Path, tmp_path: Path, ssh_keypair: tuple[str, str]
) -> None:
    program = tmp_path / "outside.py"
    program.write_text(OUTSIDE_PROGRAM)
    result = subprocess.run(
        [str(venv / "bin" / "python"), str(program), str(REPO), ssh_keypair[0]],
        cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    installed = Path(seen["components_file"]).resolve()
    assert venv.resolve() in installed.parents, f"imported {installed}, not the venv's copy"
    assert REPO not in installed.parents
    assert not seen["sys_path_has_repo"]
    assert seen["render_pf_conf"] == "cross_cloud_vpn.openbsd.pf"

    types = set(seen["types"])
    assert {
        "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/securityGroup:SecurityGroup",
        "aws:ec2/instance:Instance", "aws:ec2/eip:Eip", "aws:ec2/eipAssociation:EipAssociation",
        "aws:ec2/keyPair:KeyPair", "aws:ec2/route:Route",
    } <= types, types
    component_types = {t for t in types if t.startswith("cross-cloud-vpn:")}
    assert len(component_types) == 1, types
    component_type = component_types.pop()
    # The gateway instance is a child of the AwsSite component, not of the stack.
    assert [p.split("::")[-2].split("$")[-1] for p in seen["parents_of_instances"]] == [component_type]
    assert seen["outputs"]["public_ip"] == "198.51.100.10"
    assert seen["outputs"]["cidrs"] == ["10.30.1.0/24"]
    assert seen["outputs"]["urn"].endswith(f"{component_type}::outside-aws")
    assert seen["iked_conf_has_peer"]


def test_type_checker_sees_the_installed_hints(venv: Path, tmp_path: Path) -> None:
    if shutil.which("mypy") is None and subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import mypy"], capture_output=True
    ).returncode:
        pytest.skip("mypy is not installed (dev extra)")
    (tmp_path / "typed.py").write_text(TYPED_PROGRAM)
    # The cloud providers are huge and typed anyway: skip following them to keep this fast.
    (tmp_path / "mypy.ini").write_text(
        "[mypy]\nfollow_imports = normal\n"
        "[mypy-pulumi_aws.*,pulumi_azure_native.*,pulumi_command.*]\nfollow_imports = skip\n"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "mypy", "--config-file", "mypy.ini", "--no-incremental",
         "--cache-dir", str(tmp_path / ".mypy_cache"), "typed.py"],
        cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=300,
    )
    out = result.stdout + result.stderr
    assert "import-untyped" not in out and "py.typed" not in out, out
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 1, out
    assert "typed.py:7:" in errors[0] and "Output[str]" in errors[0] and "int" in errors[0], out
