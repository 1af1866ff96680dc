"""Route-table steering's figures: the real steering script (openbsd/steer.py) for A1 (primary)
and A2 (standby) under sh, against the fake EC2/IMDS and probe responders of
tests/test_openbsd_steer.py (every SigV4 signature checked with botocore).

- failover_s: A1's tunnel fails (health false, its responder answers 404) until A2 holds every
  route; failover_dead_s: A1's responder hangs instead (a dead instance: the probe is cut off
  after its 1 s limit) until A2 holds every route;
- failback_s: A1 healthy again until A1 holds every route;
- api_calls: EC2 calls over the whole run; describe_per_min: DescribeRouteTables calls per
  minute while nothing changes (the primary asks once per round, the standby not at all);
- takeover_imds_reads: IMDS reads between A1's failure and A2 holding every route, over both
  takeovers (credentials kept fresh in idle rounds: none expected); takeover_execs: processes
  the wrapped tools (openssl, awk, sed, sort, curl, grep, date...) ran over the same windows,
  both gateways together.

``--exec-delay S`` makes every wrapped tool sleep S seconds first: a stand-in for the
user-mode-Linux lab (lab/README.md), where each exec costs about 0.1 s on a shared CPU, so that
the process count of a takeover shows in its time.

The health flip is instant here; on a gateway it comes after bgpd's hold time (3 s) or a
NOTIFICATION. Real EC2 latency and how soon a replaced route carries traffic are not in these
figures. Prints figures; asserts nothing (not a test).

Usage: python3 benchmarks/bench_steer.py [INTERVAL_S] [MISSES] [--exec-delay S]
(defaults: the renderer's interval and misses, no delay)
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _until(condition: Callable[[], bool], limit: float = 300.0) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > limit:
            raise SystemExit(f"steer: gave up after {limit} s")
        time.sleep(0.02)
    return time.monotonic() - start


def main() -> None:
    from cross_cloud_vpn.openbsd.steer import DEFAULT_INTERVAL, DEFAULT_MISSES
    from tests.test_openbsd_steer import A1, A2, START_ROUTES, Lab, Probe, steering

    args = sys.argv[1:]
    delay = ""
    if "--exec-delay" in args:
        at = args.index("--exec-delay")
        delay = args[at + 1]
        float(delay)
        del args[at:at + 2]
    interval = float(args[0]) if args else DEFAULT_INTERVAL
    misses = int(args[1]) if len(args) > 1 else DEFAULT_MISSES
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp), {"a1": A1, "a2": A2}, START_ROUTES,
                  env={"CCVPN_TEST_EXEC_DELAY": delay} if delay else None)

        def execs() -> int:
            return len(lab.argv_log.read_text().splitlines()) if lab.argv_log.exists() else 0

        def imds_reads() -> int:
            return sum(1 for e in list(lab.fake.events) if e[0] == "imds")

        a1_probe, a2_probe = Probe("127.0.0.11"), Probe("127.0.0.12")
        try:
            a1 = lab.start("a1", replace(steering(a2_probe, standby=False, interval=interval), misses=misses))
            _until(lambda: lab.fake.all_owned_by(A1.eni))
            a2 = lab.start("a2", replace(steering(a1_probe, standby=True, interval=interval), misses=misses))
            # Steady state: one minute's worth of rounds, scaled down to 20 rounds.
            calm_s = 20 * interval
            before = lab.fake.count("DescribeRouteTables")
            time.sleep(calm_s)
            describe_per_min = (lab.fake.count("DescribeRouteTables") - before) * 60 / calm_s

            reads, processes = imds_reads(), execs()
            a1.set_healthy(False)
            a1_probe.healthy = False
            failover = _until(lambda: lab.fake.all_owned_by(A2.eni))
            takeover_reads, takeover_execs = imds_reads() - reads, execs() - processes
            a1.set_healthy(True)
            a1_probe.healthy = True
            failback = _until(lambda: lab.fake.all_owned_by(A1.eni))
            # The standby must have seen its partner answer again, or its old misses would count.
            _until(lambda: "the partner answers its probe again" in a2.lines())

            reads, processes = imds_reads(), execs()
            a1.set_healthy(False)
            a1_probe.hangs = True
            failover_dead = _until(lambda: lab.fake.all_owned_by(A2.eni))
            takeover_reads += imds_reads() - reads
            takeover_execs += execs() - processes
            a1_probe.hangs = False
            a1.set_healthy(True)
            _until(lambda: lab.fake.all_owned_by(A1.eni))
            rejected = sum(1 for c in lab.fake.calls if not c.accepted)
            print(f"steer: failover_s={failover:.2f} failover_dead_s={failover_dead:.2f} "
                  f"failback_s={failback:.2f} api_calls={len(lab.fake.calls)} rejected={rejected} "
                  f"describe_per_min={describe_per_min:.0f} takeover_imds_reads={takeover_reads} "
                  f"takeover_execs={takeover_execs} (interval={interval:g}s misses={misses}, "
                  f"exec_delay={delay or 0}s, {len(START_ROUTES) + 1} routes in 2 tables)")
        finally:
            a1_probe.stop()
            a2_probe.stop()
            lab.stop()


if __name__ == "__main__":
    main()
