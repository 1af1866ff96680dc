"""rehearse: the Pulumi program's own gateway configs negotiate a real IKEv2 tunnel on this machine.

No cloud account and no Pulumi CLI: the program is evaluated in a lab cloud (Pulumi's mocks),
the files each gateway would receive are taken from the program's own SSH bootstrap commands,
and two real iked daemons (Debian's openiked) run them inside a user-mode-linux kernel, behind
two 1:1 NATs standing in for the clouds' public IPs. Then the faults: either iked restarted, a
wrong peer key (the program's tunnel check must fail), the bootstrap run again while pings flow
(no ping may be lost), and for this repository's stacks a config change (one more workload CIDR).

What it rehearses:
  rehearse                           this repository's program with Pulumi.dev.yaml
  rehearse --stack NAME              ... with Pulumi.NAME.yaml (or --stack-file FILE)
  rehearse --program FILE_OR_DIR     YOUR Pulumi program (its __main__.py) that uses the
                                     Ikev2GatewayPair component, with its Pulumi.<stack>.yaml
                                     (next to it, or --stack-file); --config KEY=VALUE sets a
                                     value the file lacks; --pair NAME picks one of several pairs
  rehearse --plan PLAN.json          a saved cross_cloud_vpn.lab.plan.LabPlan

Stack files that bring their own networks (aws.vpcId / azure.vnetId) are refused: the lab
builds each gateway's subnet apart from the networks the tunnel carries.

Needs: root, and the Debian packages openiked user-mode-linux iptables iproute2 tcpdump kmod
iputils-ping openssl util-linux, plus openssh-client (a throwaway SSH key for the program).
Takes about two minutes.

Prints progress on stderr, then what passed and what failed (and why) with the figures, and
last one line: "rehearsal: ok tunnel_s=... pings=... cleartext=... restart_s=...
wrong_key_delivered=... hitless_lost=... change_ok=... wall_s=...". --json FILE writes every figure.

Exit status: 0 every check passed; 1 a rehearsal check failed; 2 it cannot run here (not root,
missing packages) or the input is unusable (no stack file, a config error, a refused stack).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import runpy
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from cross_cloud_vpn.lab.keys import make_keypair
from cross_cloud_vpn.lab.plan import IKED_CONF, PUBKEY_DIR, SYSCTL_CONF, GatewayPlan, LabPlan, PushedFile
from cross_cloud_vpn.lab.uml import missing_tools, run_rehearsal
from cross_cloud_vpn.lab_cloud import Evaluation, Registration, evaluate
from cross_cloud_vpn.openbsd import parse_bootstrap, psk_problem_text
from cross_cloud_vpn.stack_file import read_stack_file

PROJECT = "cross-cloud-vpn"
PAIR_TYPE = "cross-cloud-vpn:index:Ikev2GatewayPair"
REMOTE_COMMAND = "command:remote:Command"
#: The input that holds a created subnet's CIDR, by resource type.
SUBNET_CIDR = {"aws:ec2/subnet:Subnet": "cidrBlock", "azure-native:network:Subnet": "addressPrefix"}
EXIT_OK, EXIT_FAILED, EXIT_CANNOT_RUN = 0, 1, 2
#: A throwaway PSK for stacks in psk mode whose own PSK is encrypted in the stack file.
_LAB_PSK_BYTES = 24
#: Config keys (after the namespace) the lab makes up when the stack file has no readable value.
STAND_INS = ("sshPublicKey", "sshPrivateKey", "psk")


class Refused(Exception):
    """Input the lab cannot rehearse; the message says why and what to do instead."""


class GatewayKeys(Mapping[str, str]):
    """Each gateway's iked public key, made (ECDSA P-256, as OpenBSD's rc does at first boot) the
    first time the program reads it, for whatever site names the program's pair uses."""

    def __init__(self) -> None:
        self.private: dict[str, str] = {}
        self._public: dict[str, str] = {}

    def __getitem__(self, site: str) -> str:
        if site not in self._public:
            self.private[site], self._public[site] = make_keypair()
        return self._public[site]

    def __iter__(self) -> Iterator[str]:
        return iter(self._public)

    def __len__(self) -> int:
        return len(self._public)

    def private_pem(self, site: str) -> str:
        """The site's private key (made now if the program never read its public key: psk mode)."""
        self[site]
        return self.private[site]


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
    values = read_stack_file(stack_file, encrypted=set())
    public, private = _lab_ssh_key()
    values.setdefault(f"{PROJECT}:sshPublicKey", public)
    values[f"{PROJECT}:sshPrivateKey"] = private
    secrets = {f"{PROJECT}:sshPrivateKey"}
    tunnel = json.loads(values.get(f"{PROJECT}:tunnel", "{}"))
    if tunnel.get("authMode") == "psk":
        values.setdefault(f"{PROJECT}:psk", _lab_psk())
        secrets.add(f"{PROJECT}:psk")
    return values, secrets


def program_values(stack_file: Path | None, overrides: Mapping[str, str]) -> tuple[dict[str, str], set[str]]:
    """A user's stack config: the file's readable values, then ``overrides``; an encrypted
    ``sshPublicKey``/``sshPrivateKey``/``psk`` (any namespace) gets a lab stand-in, any other
    encrypted value has to come from ``overrides``."""
    encrypted: set[str] = set()
    values = read_stack_file(stack_file, encrypted) if stack_file is not None else {}
    values.update(overrides)
    secrets = {key for key in encrypted if key not in overrides}
    unknown = sorted(key for key in secrets if key.rpartition(":")[2] not in STAND_INS)
    if unknown:
        raise Refused(f"{stack_file}: {', '.join(unknown)} encrypted (only the Pulumi CLI can read it); "
                      "give a value with --config KEY=VALUE")
    if secrets:
        public, private = _lab_ssh_key()
        made = {"sshPublicKey": public, "sshPrivateKey": private, "psk": _lab_psk()}
        values.update({key: made[key.rpartition(":")[2]] for key in secrets})
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


@dataclass(frozen=True)
class PairCommands:
    """One Ikev2GatewayPair's SSH commands, by site: ``<pair>-<site>-configure`` and ``-check``."""

    name: str
    sites: tuple[str, str]
    configure: Mapping[str, Registration]
    check: Mapping[str, Registration]

    def scripts(self) -> tuple[str, str]:
        """Each gateway's bootstrap script, as its configure command would feed it."""
        return (self.configure[self.sites[0]].inputs["stdin"], self.configure[self.sites[1]].inputs["stdin"])


def gateway_pairs(ev: Evaluation) -> list[PairCommands]:
    """Every gateway pair the program registered; its two sites in alphabetical order."""
    pairs = []
    for pair in ev.by_type(PAIR_TYPE):
        children = {r.name.removeprefix(f"{pair.name}-"): r for r in ev.by_type(REMOTE_COMMAND)
                    if r.parent == pair.urn and r.name.startswith(f"{pair.name}-")}
        sites = sorted(n.removesuffix("-configure") for n in children if n.endswith("-configure"))
        if len(sites) != 2:
            raise Refused(f"gateway pair {pair.name!r} has {len(sites)} configure commands, not 2")
        pairs.append(PairCommands(
            name=pair.name, sites=(sites[0], sites[1]),
            configure={s: children[f"{s}-configure"] for s in sites},
            check={s: children[f"{s}-check"] for s in sites if f"{s}-check" in children},
        ))
    return pairs


def the_pair(ev: Evaluation, name: str | None = None) -> PairCommands:
    pairs = gateway_pairs(ev)
    names = [p.name for p in pairs]
    if name is not None:
        if name not in names:
            raise Refused(f"no gateway pair named {name!r}; the program has {names or 'none'}")
        return pairs[names.index(name)]
    if len(pairs) != 1:
        raise Refused(f"the program registered {len(pairs)} gateway pairs ({', '.join(names) or 'none'}): "
                      + ("pick one with --pair NAME" if pairs else "it needs an Ikev2GatewayPair"))
    return pairs[0]


def _iked_endpoints(iked_conf: str) -> tuple[str, list[str]]:
    """This gateway's private IP (``local``) and its local CIDRs (each flow's ``from``)."""
    local = re.search(r"^\s*local (\S+) peer ", iked_conf, flags=re.MULTILINE)
    if local is None:
        raise Refused("the pushed iked.conf has no 'local ... peer ...' line")
    flows = re.findall(r"^\s*from (\S+) to \S+", iked_conf, flags=re.MULTILINE)
    return local[1], list(dict.fromkeys(flows))


def gateway_plans(ev: Evaluation, pair: PairCommands, keys: GatewayKeys) -> tuple[GatewayPlan, GatewayPlan]:
    """Each gateway of ``pair`` as the evaluated program would configure it: the files from its
    configure command's stdin, the public IP it dials, the private IP and local CIDRs its
    iked.conf names, and the created subnet its private IP sits in."""
    subnets = [ipaddress.IPv4Network(r.inputs[key]) for r in ev.resources
               if (key := SUBNET_CIDR.get(r.type)) and isinstance(r.inputs.get(key), str)]
    plans = []
    for site in pair.sites:
        pushed = parse_bootstrap(pair.configure[site].inputs["stdin"])
        files = {path: PushedFile(content, mode) for path, (content, mode) in pushed.files.items()}
        files[SYSCTL_CONF] = PushedFile("".join(f"{line}\n" for line in pushed.sysctl_lines), 0o644)
        private_ip, local_cidrs = _iked_endpoints(files[IKED_CONF].content)
        tunnelled = [ipaddress.IPv4Network(c) for c in local_cidrs]
        around = [s for s in subnets if ipaddress.IPv4Address(private_ip) in s
                  and not any(s.overlaps(c) for c in tunnelled)]
        if not around:
            raise Refused(
                f"gateway {site!r} ({private_ip}) is in no subnet this program creates apart from the "
                f"networks the tunnel carries ({', '.join(local_cidrs)}): a bring-your-own network? The lab "
                "builds the gateway subnet and the tunnelled networks side by side, so it rehearses "
                "programs that create their networks (the same tunnel settings with created networks)")
        plans.append(GatewayPlan(
            name=site,
            public_ip=pair.configure[site].inputs["connection"]["host"],
            private_ip=private_ip,
            gateway_subnet=str(min(around, key=lambda s: s.num_addresses)),
            workload_cidrs=tuple(local_cidrs),
            files=files,
            private_key_pem=keys.private_pem(site),
        ))
    return plans[0], plans[1]


def _auth_mode(gateways: tuple[GatewayPlan, GatewayPlan]) -> str:
    a, b = gateways
    return "pubkey" if PUBKEY_DIR + b.public_ip in a.files else "psk"


def _checked(plan: LabPlan) -> LabPlan:
    problems = plan.problems()
    if problems:
        raise Refused("the evaluated program gave an unusable plan: " + "; ".join(problems))
    return plan


def _byo_problem(stack_file: Path, values: Mapping[str, str]) -> str | None:
    byo = [f"{site}.{key}" for site, key in (("aws", "vpcId"), ("azure", "vnetId"))
           if key in json.loads(values.get(f"{PROJECT}:{site}", "{}"))]
    if not byo:
        return None
    return (f"{stack_file} brings its own networks ({', '.join(byo)}): there each gateway sits in an "
            "existing subnet inside the address blocks the tunnel carries (the whole VPC/VNet), while the "
            "lab builds the gateway subnet apart from the tunnelled networks, so it cannot stand in for "
            "them. Rehearse the same tunnel settings with a stack that creates its networks (vpcCidr, "
            "gatewaySubnetCidr, workloadSubnetCidrs; e.g. Pulumi.dev.yaml)")


def build_plan(stack_file: Path, stack: str, pings: int, progress: Callable[[str], None]) -> LabPlan:
    """The plan for this repository's program with ``stack_file``: its files as evaluated, the same
    files again and a new admin CIDR for the hitless rounds, a new AWS workload CIDR for the change."""
    from cross_cloud_vpn.program import build

    values, secrets = stack_values(stack_file)
    byo = _byo_problem(stack_file, values)
    if byo:
        raise Refused(byo)
    keys = GatewayKeys()
    ev = evaluate(build, values, secrets, stack=stack, public_keys=keys)
    pair = the_pair(ev)
    progress(f"program evaluated in the lab cloud: {len(ev.resources)} resources, gateway iked key pairs "
             f"made as at first boot ({', '.join(keys)}); only public keys entered the program")
    gateways = gateway_plans(ev, pair, keys)
    ev2 = evaluate(build, with_extra_cidr(values, "aws"), secrets, stack=stack, public_keys=keys)
    changed = gateway_plans(ev2, the_pair(ev2), keys)
    progress(f"program re-evaluated with a new AWS workload CIDR: {changed[0].workload_cidrs[-1]}")
    ev3 = evaluate(build, with_extra_admin_cidr(values), secrets, stack=stack, public_keys=keys)
    progress(f"program re-evaluated with a new admin CIDR: {EXTRA_ADMIN_CIDR}")
    return _checked(LabPlan(
        auth_mode=_auth_mode(gateways), gateways=gateways, changed=changed,
        pings=pings, check_script=pair.check[pair.sites[0]].inputs["stdin"],
        reconfigure=(pair.scripts(), the_pair(ev3).scripts()),
    ))


def program_from_file(path: Path) -> Callable[[], Mapping[str, Any]]:
    """A Pulumi program file (or a project folder's ``__main__.py``) as a callable for the lab
    cloud, run as the Python language host runs it: from its folder, with the project name of the
    ``Pulumi.yaml`` there (the namespace of ``pulumi.Config()``)."""
    main = path / "__main__.py" if path.is_dir() else path
    if not main.is_file():
        raise Refused(f"no Pulumi program at {path} (a .py file, or a folder with __main__.py)")
    main = main.resolve()
    folder = main.parent
    project_file = folder / "Pulumi.yaml"
    project = None
    if project_file.is_file():
        import yaml

        project = (yaml.safe_load(project_file.read_text()) or {}).get("name")

    def program() -> Mapping[str, Any]:
        if project:
            pulumi.runtime.settings._set_project(str(project))
        cwd = Path.cwd()
        sys.path.insert(0, str(folder))
        os.chdir(folder)
        try:
            runpy.run_path(str(main), run_name="__main__")
        finally:
            os.chdir(cwd)
            sys.path.remove(str(folder))
        return {}

    return program


def plan_for_program(program: Callable[[], Mapping[str, Any] | None], config: Mapping[str, str],
                     secret_keys: Sequence[str] = (), *, stack: str = "dev", pair: str | None = None,
                     pings: int = 10, progress: Callable[[str], None] = lambda _m: None) -> LabPlan:
    """The plan to rehearse YOUR program's gateway pair: ``program`` registers resources (it may
    return outputs, or None), evaluated in the lab cloud with ``config`` (``namespace:key`` ->
    value, as Pulumi passes it); the pair's gateways get lab-made iked keys for whatever sites it
    uses. Its bootstrap runs again unchanged while pings flow; there is no config-change phase
    (the lab cannot know what to change in your config)."""
    keys = GatewayKeys()
    ev = evaluate(lambda: program() or {}, config, secret_keys, stack=stack, public_keys=keys)
    chosen = the_pair(ev, pair)
    progress(f"program evaluated in the lab cloud: {len(ev.resources)} resources; pair {chosen.name!r} "
             f"joins {chosen.sites[0]!r} and {chosen.sites[1]!r}")
    gateways = gateway_plans(ev, chosen, keys)
    check = chosen.check.get(chosen.sites[0])
    return _checked(LabPlan(
        auth_mode=_auth_mode(gateways), gateways=gateways, changed=None, pings=pings,
        check_script=check.inputs["stdin"] if check is not None else None, reconfigure=(chosen.scripts(),),
    ))


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


#: Which check a failure message of the lab belongs to (the first match wins).
_FAILURE_OF = (
    ("tunnel", re.compile(r"no ping across the tunnel")),
    ("pings", re.compile(r"pings [ab]_to_[ab]|unreachable pairs")),
    ("tunnel check", re.compile(r"the program's tunnel check")),
    ("configure again", re.compile(r"hitless|configure round")),
    ("iked restart", re.compile(r"tunnel not up before restarting|pings did not flow again")),
    ("wrong peer key", re.compile(r"wrong key|psk mode but no psk|after restoring the key")),
    ("config change", re.compile(r"change")),
    ("cleartext", re.compile(r"^\d+ cleartext|no ESP")),
)


def human_summary(result: Mapping[str, Any], plan: LabPlan) -> str:
    """What passed, what failed and why, with the figures: for a person, before the summary line."""
    a, b = (g.name for g in plan.gateways)
    why: dict[str, list[str]] = {}
    for failure in result.get("failures", []):
        check = next((c for c, pattern in _FAILURE_OF if pattern.search(failure)), "other")
        why.setdefault(check, []).append(failure)

    def pings(key: str) -> str:
        sent, got = result.get("pings", {}).get(key, [0, 0])
        return f"{got}/{sent}"

    restarts = ", ".join(f"{n} {s} s" for n, s in (result.get("restart_s_each") or {}).items())
    rows: list[tuple[str, str | None]] = [
        ("tunnel", None if result.get("tunnel_s") is None and "tunnel" not in why else
         f"first answered ping {result.get('tunnel_s')} s after both iked listened"),
        ("pings", None if "pings" not in result else
         f"{a}->{b} {pings('a_to_b')}, {b}->{a} {pings('b_to_a')}; every host reaches every remote "
         f"host: {'yes' if result.get('all_pairs_ok') else 'no'}"),
        ("cleartext", None if "cleartext" not in result else
         f"{result['cleartext']} cleartext packets on the internet link (IKE {result.get('ike_packets')}, "
         f"ESP {result.get('esp_packets')})"),
        ("tunnel check", None if "tunnel_check" not in result and "tunnel check" not in why else
         "the program's own check says 'tunnel: up' on both gateways"),
        ("configure again", None if "hitless_lost" not in result and "configure again" not in why else
         f"the program's bootstrap run again while pinging: {result.get('hitless_lost')} of "
         f"{(result.get('hitless_pings') or [0])[0]} pings lost, iked restarted "
         f"{result.get('hitless_iked_restarts')} times"),
        ("iked restart", None if "restart_s" not in result else
         f"tunnel back {result['restart_s']} s after an iked restart (worst; {restarts})"),
        ("wrong peer key", None if "wrong_key_delivered" not in result else
         f"{result['wrong_key_delivered']} pings delivered, {result.get('wrong_key_child_sas')} child SAs, "
         "the program's check fails on each (exit "
         + ", ".join(f"{n} {code}" for n, code in (result.get("wrong_key_check_exit") or {}).items()) + ")"),
        ("config change", None if result.get("change_ok") is None and "config change" not in why else
         f"new workload CIDR {', '.join(result.get('change_new_cidrs') or [])}: every pair answers: "
         f"{'yes' if result.get('change_ok') else 'no'}"),
    ]
    verdict = "every check passed" if result.get("ok") else "FAILED"
    lines = [f"Rehearsal of {a} ({plan.gateways[0].public_ip}) <-> {b} ({plan.gateways[1].public_ip}), "
             f"{plan.auth_mode} mode: {verdict} in {result.get('wall_s')} s"]
    for check, figures in rows:
        mark = "FAILED" if check in why else ("ok" if figures is not None else "not run")
        lines.append(f"  {mark:<8}{check:<16}{figures or '-'}")
        lines += [f"{'':<10}why: {reason}" for reason in why.get(check, [])]
    lines += [f"  FAILED  {'':<16}{reason}" for reason in why.get("other", [])]
    if plan.changed is None:
        lines.append("  (no config change rehearsed: the lab changes only this repository's stack config)")
    if result.get("logdir"):
        lines.append(f"  logs: {result['logdir']}")
    return "\n".join(lines)


def _config_pairs(items: Sequence[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or ":" not in key:
            raise Refused(f"--config {item!r}: write NAMESPACE:KEY=VALUE (e.g. example:amiId=ami-0123)")
        pairs[key] = value
    return pairs


def _plan(args: argparse.Namespace, progress: Callable[[str], None]) -> LabPlan:
    if args.plan is not None:
        return _checked(LabPlan.from_json(args.plan.read_text()))
    if args.program is not None:
        program = program_from_file(args.program)
        folder = args.program if args.program.is_dir() else args.program.parent
        stack_file = args.stack_file or folder / f"Pulumi.{args.stack}.yaml"
        if args.stack_file is None and not stack_file.exists():
            stack_file = None
        values, secrets = program_values(stack_file, _config_pairs(args.config))
        return plan_for_program(program, values, sorted(secrets), stack=args.stack, pair=args.pair,
                                pings=args.pings, progress=progress)
    stack_file = args.stack_file or Path(f"Pulumi.{args.stack}.yaml")
    return build_plan(stack_file, args.stack, args.pings, progress)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rehearse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="dev", help="stack name: reads Pulumi.<stack>.yaml (default dev)")
    parser.add_argument("--stack-file", type=Path, default=None, help="a stack file to read instead")
    parser.add_argument("--program", type=Path, default=None,
                        help="your Pulumi program (a .py file, or a project folder with __main__.py)")
    parser.add_argument("--config", action="append", default=[], metavar="NAMESPACE:KEY=VALUE",
                        help="with --program: a config value the stack file lacks (repeatable)")
    parser.add_argument("--pair", default=None, help="with --program: the Ikev2GatewayPair to rehearse")
    parser.add_argument("--plan", type=Path, default=None, help="rehearse a saved LabPlan JSON instead")
    parser.add_argument("--pings", type=int, default=10, help="pings each way (default 10)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this file (JSON)")
    parser.add_argument("--keep-logs", type=Path, default=None,
                        help="keep the lab's logs (console, iked, pcap) in this folder")
    args = parser.parse_args(argv)
    t0 = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {message}", file=sys.stderr, flush=True)

    missing = missing_tools()
    if missing:
        print(f"rehearse: missing Debian packages; install them with: apt-get install {' '.join(missing)}",
              file=sys.stderr)
        return EXIT_CANNOT_RUN
    if os.geteuid() != 0:
        print("rehearse: needs root (it boots user-mode Linux and builds network namespaces)",
              file=sys.stderr)
        return EXIT_CANNOT_RUN
    if args.program is None and args.plan is None:
        stack_file = args.stack_file or Path(f"Pulumi.{args.stack}.yaml")
        if not stack_file.exists():
            print(f"rehearse: no stack file {stack_file} (run from the project folder, or --stack-file)",
                  file=sys.stderr)
            return EXIT_CANNOT_RUN
    try:
        plan = _plan(args, progress)
    except Exception as err:  # a config problem, reported as the program reports it
        print(f"rehearse: {err}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    if args.keep_logs:
        args.keep_logs.mkdir(parents=True, exist_ok=True)
        result = run_rehearsal(plan, workdir=args.keep_logs, progress=progress, keep_logs=True)
    else:
        with tempfile.TemporaryDirectory(prefix="rehearse-") as tmp:
            result = run_rehearsal(plan, workdir=Path(tmp), progress=progress)
    result["rehearsed"] = str(args.plan or args.program or args.stack_file or args.stack)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(human_summary(result, plan))
    print(summary_line(result))
    return EXIT_OK if result.get("ok") else EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
