"""Host side of the rehearsal: boot a user-mode-linux kernel that runs :mod:`.guest`.

The guest's root is the host filesystem (hostfs), so it runs this very python and repository.
Everything the rehearsal makes on the host lives in one fresh folder under ``workdir``
(plan with the private keys, init script, UML's umid folder, logs) and is removed afterwards,
also on an exception or KeyboardInterrupt; the linux.uml process group is killed in any case.
Pass ``keep_logs=True`` to keep the ``logs/`` folder (console, guest log, iked logs, pcap).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .guest import PROGRESS_MARK, UML_MODULES
from .plan import LabPlan

# tool -> Debian package that ships it
TOOLS: dict[str, str] = {
    "linux.uml": "user-mode-linux",
    "iked": "openiked",
    "iptables-legacy": "iptables",
    "tcpdump": "tcpdump",
    "ip": "iproute2",
    "ss": "iproute2",
    "modprobe": "kmod",
    "ping": "iputils-ping",
    "openssl": "openssl",
    "unshare": "util-linux",
}
SEARCH_PATH = os.pathsep.join(
    [
        os.environ.get("PATH", ""),
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
)
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_TIMEOUT = 900.0


def missing_tools() -> list[str]:
    """Debian packages to install before a rehearsal can run (installs nothing itself)."""
    missing: list[str] = []
    for tool, package in TOOLS.items():
        if shutil.which(tool, path=SEARCH_PATH) is None and package not in missing:
            missing.append(package)
    if not UML_MODULES.is_dir() and "user-mode-linux" not in missing:
        missing.append("user-mode-linux")
    return missing


def _tool(name: str) -> str:
    path = shutil.which(name, path=SEARCH_PATH)
    if path is None:
        raise FileNotFoundError(f"{name} not found (install Debian package {TOOLS.get(name, name)})")
    return path


def _pythonpath() -> str:
    """The folder that holds the ``cross_cloud_vpn`` package, for the guest's PYTHONPATH."""
    spec = importlib.util.find_spec("cross_cloud_vpn")
    if spec is None or spec.origin is None:
        raise RuntimeError("cross_cloud_vpn is not importable; run from the repository root")
    return str(Path(spec.origin).parent.parent)


def _init_script(rundir: Path, logdir: Path, plan: Path, result: Path,
                 module: str = "cross_cloud_vpn.lab.guest") -> str:
    q = shlex.quote
    return f"""#!/bin/sh
# init of the lab's user-mode-linux guest (written by cross_cloud_vpn.lab.uml)
export PATH={GUEST_PATH}
export HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
export PYTHONPATH={q(_pythonpath())}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /dev/shm 2>/dev/null || true
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
{q(sys.executable)} -m {q(module)} {q(str(plan))} {q(str(result))} {q(str(logdir))}
echo o > /proc/sysrq-trigger
sleep 30
"""


def _reader(stream: IO[bytes], out: queue.Queue[str | None], sink: IO[bytes]) -> None:
    for raw in iter(stream.readline, b""):
        sink.write(raw)
        sink.flush()
        out.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
    out.put(None)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _boot(
    rundir: Path,
    plan_path: Path,
    result_path: Path,
    *,
    timeout: float,
    progress: Callable[[str], None],
    module: str = "cross_cloud_vpn.lab.guest",
    mem: str = "512M",
) -> dict[str, Any]:
    """Boot UML with ``python3 -m module PLAN RESULT LOGDIR`` as init; pass on its progress lines;
    return the result it wrote. The linux.uml process group is killed on any exit."""
    logdir = rundir / "logs"
    init_path = rundir / "init.sh"
    init_path.write_text(_init_script(rundir, logdir, plan_path, result_path, module))
    init_path.chmod(0o755)
    cmd = [
        _tool("linux.uml"),
        f"mem={mem}",
        "rootfstype=hostfs",
        "rw",
        f"init={init_path}",
        "con=null",
        "ssl=null",
        "con0=null,fd:1",
        f"umid={rundir.name}",
        f"uml_dir={rundir}",
        "quiet",
    ]
    proc: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {}
    try:
        with (logdir / "console.log").open("wb") as console:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=rundir,
            )
            assert proc.stdout is not None
            lines: queue.Queue[str | None] = queue.Queue()
            reader = threading.Thread(target=_reader, args=(proc.stdout, lines, console), daemon=True)
            reader.start()
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    result = {"ok": False, "failures": [f"rehearsal timed out after {timeout:.0f}s"]}
                    break
                try:
                    line = lines.get(timeout=min(left, 5.0))
                except queue.Empty:
                    if proc.poll() is not None and not reader.is_alive():
                        break
                    continue
                if line is None:
                    break
                i = line.find(PROGRESS_MARK)
                if i >= 0:
                    progress(line[i + len(PROGRESS_MARK) :])
        _kill_group(proc)
        if not result:
            if result_path.exists():
                result = json.loads(result_path.read_text())
            else:
                result = {"ok": False, "failures": ["the guest wrote no result (see the console log)"]}
    finally:
        if proc is not None:
            _kill_group(proc)
    return result


def run_in_guest(
    plan_json: str,
    *,
    workdir: Path,
    progress: Callable[[str], None],
    keep_logs: bool,
    timeout: float,
    module: str = "cross_cloud_vpn.lab.guest",
    mem: str = "512M",
) -> dict[str, Any]:
    """Run ``python3 -m module PLAN RESULT LOGDIR`` as a fresh UML guest's init, in one new folder
    under ``workdir`` (the plan 0600, removed afterwards; only ``logs/`` kept with ``keep_logs``,
    its path then in ``result["logdir"]``), and return the result the guest wrote."""
    workdir.mkdir(parents=True, exist_ok=True)
    rundir = Path(tempfile.mkdtemp(prefix="lab-", dir=workdir)).resolve()
    logdir = rundir / "logs"
    logdir.mkdir()
    plan_path = rundir / "plan.json"
    result_path = rundir / "result.json"
    result: dict[str, Any] = {}
    try:
        fd = os.open(plan_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(plan_json)
        result = _boot(rundir, plan_path, result_path, timeout=timeout, progress=progress, module=module,
                       mem=mem)
    finally:
        plan_path.unlink(missing_ok=True)
        if keep_logs:
            for name in os.listdir(rundir):
                if name != "logs":
                    p = rundir / name
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
        else:
            shutil.rmtree(rundir, ignore_errors=True)
    if keep_logs:
        result["logdir"] = str(logdir)
    return result


def run_rehearsal(
    plan: LabPlan,
    *,
    workdir: Path,
    progress: Callable[[str], None],
    keep_logs: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Boot UML, rehearse the tunnel of ``plan`` in it, return the figures.

    The figures are described in :mod:`.guest`; ``ok`` is true only when every check passed
    (``failures`` lists the others), ``wall_s`` is the host-side wall time including boot.
    With ``keep_logs`` the logs stay in ``result["logdir"]``.
    """
    t0 = time.monotonic()
    problems = plan.problems()
    if problems:
        return {"ok": False, "failures": [f"plan: {p}" for p in problems], "wall_s": 0.0}
    missing = missing_tools()
    if missing:
        return {"ok": False, "failures": [f"missing Debian packages: {' '.join(missing)}"], "wall_s": 0.0}
    progress(f"booting user-mode-linux ({plan.auth_mode} mode)")
    result = run_in_guest(plan.to_json(), workdir=workdir, progress=progress, keep_logs=keep_logs,
                          timeout=timeout)
    result["wall_s"] = round(time.monotonic() - t0, 1)
    return result
