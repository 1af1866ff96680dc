"""``rehearse``: the program's own configs negotiate a real IKEv2 tunnel on this machine.

1. Each gateway makes its iked key pair, as OpenBSD does at first boot.
2. The real Pulumi program is evaluated for a stack's config in the lab cloud
   (:mod:`cross_cloud_vpn.lab_cloud`); only the public keys enter it.
3. What each gateway would receive is taken from the ``configure`` commands' ``stdin``
   (the bootstrap script), read back with :func:`cross_cloud_vpn.openbsd.parse_bootstrap`:
   no second code path renders anything.
4. The lab engine (:mod:`cross_cloud_vpn.lab`) boots user-mode Linux and runs two real iked
   daemons behind 1:1 NAT with those files, then the faults; a config change (a third
   workload CIDR) is re-evaluated by the program and applied the same way.
5. Configures that leave iked.conf alone (the same files again, then a new admin CIDR, which
   changes only pf.conf) run the program's own bootstrap scripts unchanged on both gateways
   while pings flow: ``hitless_lost`` counts the pings lost (goal 0).

Prints progress, the figures, and one summary line; ``--json FILE`` writes the figures.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cross_cloud_vpn.lab.keys import make_keypair
from cross_cloud_vpn.lab.plan import SYSCTL_CONF, GatewayPlan, LabPlan, PushedFile
from cross_cloud_vpn.lab.uml import missing_tools, run_rehearsal
from cross_cloud_vpn.lab_cloud import Evaluation, evaluate
from cross_cloud_vpn.openbsd import parse_bootstrap, psk_problem_text
from cross_cloud_vpn.stack_file import read_stack_file

PROJECT = "cross-cloud-vpn"
SITES = ("aws", "azure")
#: A throwaway PSK for stacks in psk mode whose own PSK is encrypted in the stack file.
_LAB_PSK_BYTES = 24


def _lab_ssh_key() -> tuple[str, str]:
    """A throwaway RSA SSH key: the program needs one, the lab never dials SSH."""
    with tempfile.TemporaryDirectory(prefix="ccvpn-ssh-") as tmp:
        key = Path(tmp) / "id_rsa"
        subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "lab", "-f", str(key)],
                       check=True)
        return key.with_suffix(".pub").read_text().strip(), key.read_text()


def _lab_psk() -> str:
    """A random base64 PSK, as the README makes one, that the program accepts (one in 4096 starts
    with "0x", which iked would read as hex)."""
    while True:
        psk = subprocess.run(["openssl", "rand", "-base64", str(_LAB_PSK_BYTES)], check=True,
                             capture_output=True, text=True).stdout.strip()
        if psk_problem_text(psk) is None:
            return psk


def stack_values(stack_file: Path) -> tuple[dict[str, str], set[str]]:
    """The stack's config plus what a user sets outside the file (keys, PSK) made up for the lab."""
    values = read_stack_file(stack_file)
    public, private = _lab_ssh_key()
    values.setdefault(f"{PROJECT}:sshPublicKey", public)
    values[f"{PROJECT}:sshPrivateKey"] = private
    secrets = {f"{PROJECT}:sshPrivateKey"}
    tunnel = json.loads(values.get(f"{PROJECT}:tunnel", "{}"))
    if tunnel.get("authMode") == "psk":
        values.setdefault(f"{PROJECT}:psk", _lab_psk())
        secrets.add(f"{PROJECT}:psk")
    return values, secrets


def with_extra_cidr(values: Mapping[str, str], site: str) -> dict[str, str]:
    """The config change the rehearsal applies: one more workload subnet on ``site``."""
    changed = dict(values)
    obj = json.loads(changed[f"{PROJECT}:{site}"])
    nets = [ipaddress.IPv4Network(c) for c in obj["workloadSubnetCidrs"]]
    outer = ipaddress.IPv4Network(obj["vpcCidr" if site == "aws" else "vnetCidr"])
    used = [*nets, ipaddress.IPv4Network(obj["gatewaySubnetCidr"])]
    fresh = next(s for s in outer.subnets(new_prefix=nets[-1].prefixlen)
                 if not any(s.overlaps(u) for u in used))
    obj["workloadSubnetCidrs"] = [*obj["workloadSubnetCidrs"], str(fresh)]
    changed[f"{PROJECT}:{site}"] = json.dumps(obj)
    return changed


#: The admin network the hitless phase adds: it changes pf.conf only, never iked.conf.
EXTRA_ADMIN_CIDR = "198.18.0.0/15"


def with_extra_admin_cidr(values: Mapping[str, str]) -> dict[str, str]:
    """A configure that touches only pf.conf: one more network allowed to SSH to the gateways."""
    changed = dict(values)
    key = f"{PROJECT}:adminCidrs"
    changed[key] = json.dumps([*json.loads(changed[key]), EXTRA_ADMIN_CIDR])
    return changed


def configure_scripts(ev: Evaluation) -> tuple[str, str]:
    """Each gateway's bootstrap script, as its configure command would feed it."""
    aws, azure = (ev.named(f"-tunnel-{site}-configure").inputs["stdin"] for site in SITES)
    return aws, azure


def gateway_plans(ev: Evaluation, values: Mapping[str, str], private_keys: Mapping[str, str]
                  ) -> tuple[GatewayPlan, GatewayPlan]:
    """Each gateway as the evaluated program would configure it."""
    plans = []
    for site in SITES:
        pushed = parse_bootstrap(ev.named(f"-tunnel-{site}-configure").inputs["stdin"])
        files = {path: PushedFile(content, mode) for path, (content, mode) in pushed.files.items()}
        files[SYSCTL_CONF] = PushedFile("".join(f"{line}\n" for line in pushed.sysctl_lines), 0o644)
        side = json.loads(values[f"{PROJECT}:{site}"])
        plans.append(GatewayPlan(
            name=site,
            public_ip=ev.outputs[f"{site}_public_ip"],
            private_ip=ev.outputs[f"{site}_gateway_private_ip"],
            gateway_subnet=side["gatewaySubnetCidr"],
            workload_cidrs=tuple(ev.outputs[f"{site}_cidrs"]),
            files=files,
            private_key_pem=private_keys[site],
        ))
    return plans[0], plans[1]


def build_plan(stack_file: Path, stack: str, pings: int, progress: Any) -> LabPlan:
    from cross_cloud_vpn.program import build

    keys = {site: make_keypair() for site in SITES}
    progress("gateway iked key pairs made (as at first boot); only public keys enter the program")
    public = {site: pub for site, (_, pub) in keys.items()}
    private = {site: priv for site, (priv, _) in keys.items()}
    values, secrets = stack_values(stack_file)
    ev = evaluate(build, values, secrets, stack=stack, public_keys=public)
    progress(f"program evaluated in the lab cloud: {len(ev.resources)} resources, "
             f"aws {ev.outputs['aws_public_ip']} / azure {ev.outputs['azure_public_ip']}")
    changed_values = with_extra_cidr(values, "aws")
    ev2 = evaluate(build, changed_values, secrets, stack=stack, public_keys=public)
    progress(f"program re-evaluated with a new AWS workload CIDR: {ev2.outputs['aws_cidrs'][-1]}")
    ev3 = evaluate(build, with_extra_admin_cidr(values), secrets, stack=stack, public_keys=public)
    progress(f"program re-evaluated with a new admin CIDR: {EXTRA_ADMIN_CIDR}")
    mode = json.loads(values.get(f"{PROJECT}:tunnel", "{}")).get("authMode", "pubkey")
    plan = LabPlan(auth_mode=mode, gateways=gateway_plans(ev, values, private),
                   changed=gateway_plans(ev2, changed_values, private), pings=pings,
                   check_script=ev.named("-tunnel-aws-check").inputs["stdin"],
                   reconfigure=(configure_scripts(ev), configure_scripts(ev3)))
    problems = plan.problems()
    if problems:
        raise ValueError("the evaluated program gave an unusable plan: " + "; ".join(problems))
    return plan


def summary_line(result: Mapping[str, Any]) -> str:
    pings = result.get("pings", {})

    def fraction(key: str) -> str:
        sent, got = pings.get(key, [0, 0])
        return f"{got}/{sent}"

    status = "ok" if result.get("ok") else "FAILED"
    return (f"rehearsal: {status} tunnel_s={result.get('tunnel_s')} "
            f"pings={fraction('a_to_b')},{fraction('b_to_a')} cleartext={result.get('cleartext')} "
            f"restart_s={result.get('restart_s')} wrong_key_delivered={result.get('wrong_key_delivered')} "
            f"hitless_lost={result.get('hitless_lost')} "
            f"change_ok={result.get('change_ok')} wall_s={result.get('wall_s')}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rehearse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="dev", help="stack name: reads Pulumi.<stack>.yaml (default dev)")
    parser.add_argument("--stack-file", type=Path, default=None, help="a stack file to read instead")
    parser.add_argument("--pings", type=int, default=10, help="pings each way (default 10)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    parser.add_argument("--keep-logs", type=Path, default=None, help="keep the lab's logs in this folder")
    args = parser.parse_args(argv)
    t0 = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {message}", file=sys.stderr, flush=True)

    missing = missing_tools()
    if missing:
        print(f"rehearse: missing tools; install them with: apt-get install {' '.join(missing)}",
              file=sys.stderr)
        return 2
    stack_file = args.stack_file or Path(f"Pulumi.{args.stack}.yaml")
    if not stack_file.exists():
        print(f"rehearse: no stack file {stack_file} (run from the project folder, or --stack-file)",
              file=sys.stderr)
        return 2
    try:
        plan = build_plan(stack_file, args.stack, args.pings, progress)
    except Exception as err:  # a config problem, reported as the program reports it
        print(f"rehearse: {err}", file=sys.stderr)
        return 2
    if args.keep_logs:
        args.keep_logs.mkdir(parents=True, exist_ok=True)
        result = run_rehearsal(plan, workdir=args.keep_logs, progress=progress, keep_logs=True)
    else:
        with tempfile.TemporaryDirectory(prefix="rehearse-") as tmp:
            result = run_rehearsal(plan, workdir=Path(tmp), progress=progress)
    result["stack"] = args.stack
    text = json.dumps(result, indent=1, sort_keys=True)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    print(summary_line(result))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    raise SystemExit(main())
