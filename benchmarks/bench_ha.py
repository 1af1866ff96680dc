"""The HA rehearsal's figures: per fault, the gap of a one-way stream (5 datagrams/s) in each
direction while traffic fails over and while it fails back, and cleartext on the internet links.

Prints figures; asserts nothing (not a test). Run as root: python benchmarks/bench_ha.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    from cross_cloud_vpn.lab.ha import run_ha_rehearsal, summary_line

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    worst: list[float] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            result = run_ha_rehearsal(workdir=Path(tmp), progress=lambda _m: None)
        print(summary_line(result), flush=True)
        print(f"  up_s={result.get('up_s')} wall_s={result.get('wall_s')} "
              f"route_server_prefixes={result.get('route_server_prefixes')} "
              f"igw_private_drops={result.get('igw_private_drops')} guard_drops={result.get('guard_drops')}")
        for name, fault in (result.get("faults") or {}).items():
            pings = f"{fault.get('ping_gap_from_a_s')}/{fault.get('ping_gap_from_b_s')}"
            print(f"  {name}: ping gaps from AWS/Azure {pings}s, steered during the fault to "
                  f"{fault.get('steering_during')}, back on pair 1 {fault.get('healed_s')}s after healing")
        if isinstance(result.get("failover_max_s"), int | float):
            worst.append(float(result["failover_max_s"]))
    if worst:
        print(f"failover_max_s: min={min(worst):.2f} median={statistics.median(worst):.2f} "
              f"max={max(worst):.2f} (n={len(worst)})")


if __name__ == "__main__":
    main()
