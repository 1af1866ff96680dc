"""Evaluation time of the whole program under the lab cloud, against importing its SDKs.

Prints figures; asserts nothing (not a test). Run: python benchmarks/bench_program.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

IMPORTS = "import pulumi, pulumi_aws, pulumi_azure_native, pulumi_command"


def import_seconds() -> float:
    code = f"import time; t=time.perf_counter(); {IMPORTS}; print(time.perf_counter()-t)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout)


def main() -> None:
    from cross_cloud_vpn.lab.keys import make_keypair
    from cross_cloud_vpn.lab_cloud import evaluate
    from cross_cloud_vpn.program import build
    from cross_cloud_vpn.rehearse import stack_values

    values, secrets = stack_values(REPO / "Pulumi.dev.yaml")
    keys = {site: make_keypair()[1] for site in ("aws", "azure")}
    imports = [import_seconds() for _ in range(3)]
    evals = []
    for _ in range(5):
        t = time.perf_counter()
        ev = evaluate(build, values, secrets, public_keys=keys)
        evals.append(time.perf_counter() - t)
    imp, ev_s = statistics.median(imports), statistics.median(evals)
    print(f"resources={len(ev.resources)} import_s={imp:.2f} evaluate_s={ev_s:.2f} "
          f"ratio={ev_s / imp:.2f} (median of {len(imports)} imports, {len(evals)} evaluations)")


if __name__ == "__main__":
    main()
