"""The HA rehearsal's figures: per fault, the gap of a one-way stream (5 datagrams/s) in each
direction while traffic fails over and while it fails back, and cleartext on the internet links.

Prints figures; asserts nothing (not a test). Run as root:
python benchmarks/bench_ha.py [N] [--aws-steering route-server|route-tables]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    from cross_cloud_vpn.lab.ha import AWS_STEERINGS, run_ha_rehearsal, summary_line

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", type=int, default=1)
    parser.add_argument("--aws-steering", choices=AWS_STEERINGS, default="route-server",
                        help="route-server: a route server stand-in; route-tables: the program's steering "
                             "script on A1/A2 against a fake EC2 API")
    args = parser.parse_args()
    worst: list[float] = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            result = run_ha_rehearsal(workdir=Path(tmp), progress=lambda _m: None,
                                      aws_steering=args.aws_steering)
        print(summary_line(result), flush=True)
        print(f"  up_s={result.get('up_s')} wall_s={result.get('wall_s')} "
              f"igw_private_drops={result.get('igw_private_drops')} guard_drops={result.get('guard_drops')}")
        if args.aws_steering == "route-server":
            print(f"  route_server_prefixes={result.get('route_server_prefixes')}")
        else:
            print(f"  EC2 calls accepted {result.get('ec2_calls')}, rejected {result.get('ec2_rejected')}, "
                  f"takeovers={result.get('takeovers')} failbacks={result.get('failbacks')}")
        for name, fault in (result.get("faults") or {}).items():
            pings = f"{fault.get('ping_gap_from_a_s')}/{fault.get('ping_gap_from_b_s')}"
            print(f"  {name}: ping gaps from AWS/Azure {pings}s, steered during the fault to "
                  f"{fault.get('steering_during')}, back on pair 1 {fault.get('healed_s')}s after healing")
            if "ec2_claims" in fault:
                claims = ", ".join(f"+{c[0]}s {c[1]} {c[2]} {c[3]}->{c[4]}" for c in fault["ec2_claims"])
                print(f"    route claims: {claims or 'none'}; after the fault: A1 unhealthy "
                      f"{fault.get('a1_unhealthy_s')}s, A2 decided {fault.get('a2_decided_s')}s, "
                      f"A2's claim accepted {fault.get('a2_claimed_s')}s "
                      f"(A2 read its credentials from IMDS {fault.get('a2_credential_reads')} times first)")
        if isinstance(result.get("failover_max_s"), int | float):
            worst.append(float(result["failover_max_s"]))
    if worst:
        print(f"failover_max_s: min={min(worst):.2f} median={statistics.median(worst):.2f} "
              f"max={max(worst):.2f} (n={len(worst)})")


if __name__ == "__main__":
    main()
