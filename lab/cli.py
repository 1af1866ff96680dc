"""``rehearse PLAN.json``: run the lab rehearsal of a saved :class:`LabPlan` and print the figures.

Exit status 0 when every check passed, 1 when one failed, 2 when the tools are missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .plan import LabPlan
from .uml import missing_tools, run_rehearsal


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rehearse", description=__doc__)
    ap.add_argument(
        "plan", type=Path, help="LabPlan JSON (LabPlan.to_json()); holds private keys: keep it 0600"
    )
    ap.add_argument(
        "--workdir", type=Path, default=None, help="where the run folder goes (default: a temp dir)"
    )
    ap.add_argument("--keep-logs", action="store_true", help="keep console, guest, iked logs and the pcap")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    missing = missing_tools()
    if missing:
        print("missing Debian packages: apt-get install " + " ".join(missing), file=sys.stderr)
        return 2
    plan = LabPlan.from_json(args.plan.read_text())
    t0 = time.monotonic()

    def progress(msg: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    if args.workdir is None:
        with tempfile.TemporaryDirectory(prefix="rehearse-") as tmp:
            result = run_rehearsal(plan, workdir=Path(tmp), progress=progress, keep_logs=False)
    else:
        result = run_rehearsal(plan, workdir=args.workdir, progress=progress, keep_logs=args.keep_logs)
    text = json.dumps(result, indent=1, sort_keys=True)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    raise SystemExit(main())
