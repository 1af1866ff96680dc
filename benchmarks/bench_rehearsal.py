"""The rehearsal's figures (tunnel seconds, restart seconds, pings lost while reconfiguring, wall time)
over N runs.

Prints figures; asserts nothing (not a test). Run as root: python benchmarks/bench_rehearsal.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    from cross_cloud_vpn.lab.uml import run_rehearsal
    from cross_cloud_vpn.rehearse import build_plan, summary_line

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    figures: dict[str, list[float]] = {"tunnel_s": [], "restart_s": [], "hitless_lost": [], "wall_s": []}
    for _ in range(runs):
        t = time.perf_counter()
        plan = build_plan(REPO / "Pulumi.dev.yaml", "dev", 10, lambda _m: None)
        with tempfile.TemporaryDirectory() as tmp:
            result = run_rehearsal(plan, workdir=Path(tmp), progress=lambda _m: None)
        result["wall_s"] = round(time.perf_counter() - t, 1)
        print(summary_line(result), flush=True)
        for key in figures:
            if isinstance(result.get(key), int | float):
                figures[key].append(float(result[key]))
    for key, values in figures.items():
        if values:
            print(f"{key}: min={min(values):.2f} median={statistics.median(values):.2f} "
                  f"max={max(values):.2f} (n={len(values)})")


if __name__ == "__main__":
    main()
