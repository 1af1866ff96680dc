"""What runs inside the user-mode-linux guest: build the lab, run two real iked, measure.

Run as ``python3 -m cross_cloud_vpn.lab.guest PLAN.json RESULT.json LOGDIR`` by the init script
that :mod:`cross_cloud_vpn.lab.uml` writes.  The host filesystem is the guest's root (hostfs), so
this is the host's own python and repository.  Progress lines go to the console (stdout) prefixed
with :data:`PROGRESS_MARK`; the host picks them out of the kernel's console output.

Topology (all namespaces inside the guest, IPv6 off everywhere)::

    h-a-0 (.10 of CIDR 0) --\\                                          /-- h-b-0
    h-a-1 (.10 of CIDR 1) ---+ gw-a  --(gateway subnet)-- edge-a --+     +-- edge-b -- gw-b +-- h-b-1
       ...                  /  .1 of each CIDR   private_ip        |inet|
                                                          1:1 NAT  +----+  1:1 NAT

* ``inet`` is the internet router: it only knows the two public IPs (routed to the edges over
  169.254.{100,101}.0/30 transit links).  Its FORWARD chain counts every packet by kind
  (IKE on 500, IKE on 4500, ESP-in-UDP, raw ESP, ICMP errors, anything else = cleartext) and
  tcpdump captures the cleartext filter on the link to edge A as a second opinion.
* ``edge-X`` stands in for the Elastic IP / Azure public IP: DNAT public->private,
  SNAT private->public (iptables-legacy), and is the gateway subnet's router (its first
  address that is not the gateway's).
* ``gw-X`` has the plan's private IP in the gateway subnet, default route via the edge, and
  is the router (.1) of each of its workload CIDRs; each workload host sits on its own veth
  link with .10 of its CIDR.  ip_forward follows the plan's /etc/sysctl.conf.  The guard
  (what pf does on OpenBSD) drops LOCAL->REMOTE forwarding that has no IPsec policy.
* iked runs in ``gw-X`` under ``unshare -m`` with its own tree bind-mounted on /etc/iked,
  the plan's iked.conf unchanged (0600) and its own control socket.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .keys import make_keypair, public_pem_of
from .plan import IKED_CONF, PUBKEY_DIR, GatewayPlan, LabPlan, PushedFile

PROGRESS_MARK = "@@LAB@@ "
RESULT_MARK = "@@LABDONE@@"
RUN = Path("/run/lab")
MODULES = [
    "ipv6",
    "af_key",
    "esp4",
    "xfrm_user",
    "xfrm4_tunnel",
    "tunnel4",
    "veth",
    "authenc",
    "gcm",
    "ctr",
    "ghash-generic",
    "cbc",
    "sha512_generic",
    "hmac",
    "echainiv",
    "seqiv",
    "ip_tables",
    "iptable_nat",
    "iptable_filter",
    "xt_nat",
    "xt_policy",
    "xt_comment",
    "xt_u32",
    "xt_tcpudp",
]
IPT = "iptables-legacy"
UML_MODULES = Path("/usr/lib/uml/modules")
TRANSIT = ("169.254.100.0/30", "169.254.101.0/30")
LISTEN_TIMEOUT = 60.0
TUNNEL_TIMEOUT = 60.0
RESTART_TIMEOUT = 45.0
WRONG_KEY_SETTLE = 10.0


def progress(msg: str) -> None:
    print(PROGRESS_MARK + msg, flush=True)


class Log:
    """Append-only guest log (commands, outputs) on the host filesystem."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = path.open("a", encoding="utf-8")
        self.t0 = time.monotonic()

    def write(self, msg: str) -> None:
        self.fh.write(f"[{time.monotonic() - self.t0:8.3f}] {msg}\n")
        self.fh.flush()


LOG: Log | None = None


def log(msg: str) -> None:
    if LOG is not None:
        LOG.write(msg)


def run(cmd: Sequence[str], *, ns: str | None = None, check: bool = True, input: str | None = None) -> str:
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    p = subprocess.run(full, capture_output=True, text=True, input=input)
    log(
        f"$ {' '.join(full)} -> {p.returncode}" + (f"\n{p.stdout}{p.stderr}".rstrip() if p.returncode else "")
    )
    if check and p.returncode != 0:
        raise RuntimeError(f"command failed ({p.returncode}): {' '.join(full)}\n{p.stdout}{p.stderr}")
    return p.stdout


def sh(script: str, *, ns: str | None = None, check: bool = True) -> str:
    return run(["sh", "-ec", script], ns=ns, check=check)


# --------------------------------------------------------------------------- guest boot


def prepare_kernel() -> None:
    """Modules (with an on-demand modprobe wrapper) and a quiet console."""
    RUN.mkdir(parents=True, exist_ok=True)
    mods = RUN / "mods"
    (mods / "lib").mkdir(parents=True, exist_ok=True)
    link = mods / "lib" / "modules"
    if not link.exists():
        link.symlink_to(UML_MODULES)
    wrapper = RUN / "modprobe"
    wrapper.write_text(f'#!/bin/sh\nexec /usr/sbin/modprobe -d {mods} "$@"\n')
    wrapper.chmod(0o755)
    Path("/proc/sys/kernel/modprobe").write_text(str(wrapper))
    run(["/usr/sbin/modprobe", "-d", str(mods), "-a", *MODULES])
    Path("/proc/sys/kernel/printk").write_text("1 4 1 7")


# --------------------------------------------------------------------------- the network


def nth(cidr: str, n: int) -> str:
    return str(ipaddress.IPv4Network(cidr)[n])


def prefix(cidr: str) -> int:
    return ipaddress.IPv4Network(cidr).prefixlen


def make_ns(name: str, forward: bool) -> None:
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "dev", "lo", "up"])
    sh(
        "for f in /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/sys/net/ipv6/conf/default/disable_ipv6; "
        "do echo 1 > $f; done; "
        f"echo {1 if forward else 0} > /proc/sys/net/ipv4/ip_forward",
        ns=name,
    )


def veth(ns1: str, if1: str, ns2: str, if2: str) -> None:
    run(["ip", "link", "add", if1, "netns", ns1, "type", "veth", "peer", "name", if2, "netns", ns2])
    run(["ip", "-n", ns1, "link", "set", "dev", if1, "up"])
    run(["ip", "-n", ns2, "link", "set", "dev", if2, "up"])


def addr(ns: str, ifname: str, cidr: str) -> None:
    run(["ip", "-n", ns, "addr", "add", cidr, "dev", ifname])


@dataclass
class Side:
    """Runtime state of one gateway in the guest."""

    index: int
    plan: GatewayPlan
    peer: GatewayPlan
    hosts: dict[str, str] = field(default_factory=dict)  # cidr -> host namespace
    iked: subprocess.Popen[bytes] | None = None
    guard_total: int = 0
    gw: str = ""  # the gateway's namespace

    def __post_init__(self) -> None:
        if not self.gw:
            self.gw = f"gw-{self.letter}"

    @property
    def letter(self) -> str:
        return "ab"[self.index]

    @property
    def edge(self) -> str:
        return f"edge-{self.letter}"

    @property
    def dir(self) -> Path:
        return RUN / self.gw

    @property
    def etc(self) -> Path:
        """The gateway's /etc: the bootstrap phase binds it over /etc, as the program's files land."""
        return self.dir / "etc"

    @property
    def tree(self) -> Path:
        return self.etc / "iked"

    @property
    def conf(self) -> Path:
        return self.etc / "iked.conf"

    @property
    def sock(self) -> Path:
        return self.dir / "iked.sock"

    def host_ip(self, cidr: str) -> str:
        return nth(cidr, 10)


def host_ns(side: Side, i: int) -> str:
    return f"h-{side.letter}-{i}"


def build_edge(side: Side) -> None:
    g = side.plan
    transit = TRANSIT[side.index]
    make_ns(side.edge, forward=True)
    veth("inet", f"to-{side.letter}", side.edge, "outside")
    addr("inet", f"to-{side.letter}", f"{nth(transit, 1)}/30")
    addr(side.edge, "outside", f"{nth(transit, 2)}/30")
    run(["ip", "-n", "inet", "route", "add", f"{g.public_ip}/32", "via", nth(transit, 2)])
    run(["ip", "-n", side.edge, "route", "add", "default", "via", nth(transit, 1)])
    # the gateway subnet: the edge is its router (first address that is not the gateway's)
    subnet = ipaddress.IPv4Network(g.gateway_subnet)
    router = next(str(h) for h in subnet.hosts() if str(h) != g.private_ip)
    make_ns(side.gw, forward=g.ip_forwarding())
    veth(side.edge, "inside", side.gw, "wan")
    addr(side.edge, "inside", f"{router}/{subnet.prefixlen}")
    addr(side.gw, "wan", f"{g.private_ip}/{subnet.prefixlen}")
    run(["ip", "-n", side.gw, "route", "add", "default", "via", router])
    # 1:1 NAT, like the Elastic IP / Azure public IP
    run(
        [
            IPT,
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-d",
            g.public_ip,
            "-j",
            "DNAT",
            "--to-destination",
            g.private_ip,
        ],
        ns=side.edge,
    )
    run(
        [IPT, "-t", "nat", "-A", "POSTROUTING", "-s", g.private_ip, "-j", "SNAT", "--to-source", g.public_ip],
        ns=side.edge,
    )


def sync_hosts(side: Side) -> list[str]:
    """Make one host per workload CIDR (and drop hosts of CIDRs gone); returns the new CIDRs."""
    new: list[str] = []
    wanted = list(side.plan.workload_cidrs)
    for cidr in list(side.hosts):
        if cidr not in wanted:
            ns = side.hosts.pop(cidr)
            run(["ip", "netns", "del", ns])
    used = {int(ns.rsplit("-", 1)[1]) for ns in side.hosts.values()}
    for cidr in wanted:
        if cidr in side.hosts:
            continue
        i = next(n for n in range(1000) if n not in used)
        used.add(i)
        ns = host_ns(side, i)
        make_ns(ns, forward=False)
        veth(side.gw, f"w{i}", ns, "eth0")
        addr(side.gw, f"w{i}", f"{nth(cidr, 1)}/{prefix(cidr)}")
        addr(ns, "eth0", f"{side.host_ip(cidr)}/{prefix(cidr)}")
        run(["ip", "-n", ns, "route", "add", "default", "via", nth(cidr, 1)])
        side.hosts[cidr] = ns
        new.append(cidr)
    sh(f"echo {1 if side.plan.ip_forwarding() else 0} > /proc/sys/net/ipv4/ip_forward", ns=side.gw)
    return new


def guard_rules(side: Side) -> None:
    """The pf-equivalent guard: never forward LOCAL->REMOTE without an IPsec policy."""
    side.guard_total += guard_drops(side)
    run([IPT, "-F", "FORWARD"], ns=side.gw)
    run([IPT, "-Z", "FORWARD"], ns=side.gw)
    for local in side.plan.workload_cidrs:
        for remote in side.peer.workload_cidrs:
            run(
                [
                    IPT,
                    "-A",
                    "FORWARD",
                    "-s",
                    local,
                    "-d",
                    remote,
                    "-m",
                    "policy",
                    "--dir",
                    "out",
                    "--pol",
                    "none",
                    "-m",
                    "comment",
                    "--comment",
                    "guard",
                    "-j",
                    "DROP",
                ],
                ns=side.gw,
            )


def ipt_counts(ns: str, chain: str = "FORWARD", table: str = "filter") -> dict[str, int]:
    """Packet counters of the rules in a chain, summed by their comment."""
    out = run([IPT, "-t", table, "-L", chain, "-v", "-x", "-n"], ns=ns, check=False)
    counts: dict[str, int] = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+\d+\s+.*/\* (\S+) \*/", line)
        if m:
            counts[m.group(2)] = counts.get(m.group(2), 0) + int(m.group(1))
    return counts


def guard_drops(side: Side) -> int:
    return ipt_counts(side.gw).get("guard", 0)


INET_RULES: tuple[tuple[str, list[str]], ...] = (
    ("ike", ["-p", "udp", "--dport", "500"]),
    ("ike", ["-p", "udp", "--sport", "500"]),
    ("ike", ["-p", "udp", "--dport", "4500", "-m", "u32", "--u32", "0>>22&0x3C@8=0"]),
    ("ike", ["-p", "udp", "--sport", "4500", "-m", "u32", "--u32", "0>>22&0x3C@8=0"]),
    ("esp", ["-p", "udp", "--dport", "4500"]),
    ("esp", ["-p", "udp", "--sport", "4500"]),
    ("esp", ["-p", "esp"]),
    ("icmperr", ["-p", "icmp", "--icmp-type", "destination-unreachable"]),
    ("cleartext", []),
)


def build_inet() -> None:
    make_ns("inet", forward=True)


def inet_counters() -> None:
    for tag, match in INET_RULES:
        run([IPT, "-A", "FORWARD", *match, "-m", "comment", "--comment", tag, "-j", "ACCEPT"], ns="inet")


# --------------------------------------------------------------------------- iked


def write_file(path: Path, content: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(content)
    os.chmod(path, mode)


def install_iked_files(
    side: Side, private_pem: str, public_pem: str, override: dict[str, PushedFile] | None = None
) -> None:
    """(Re)write the gateway's /etc (its /etc/iked tree, iked.conf and the rest) from the plan."""
    tree = side.tree
    if tree.exists():
        subprocess.run(["rm", "-rf", str(tree)], check=True)
    for sub in (
        "ca",
        "certs",
        "crls",
        "private",
        "pubkeys/ipv4",
        "pubkeys/ipv6",
        "pubkeys/fqdn",
        "pubkeys/ufqdn",
    ):
        (tree / sub).mkdir(parents=True, exist_ok=True)
    (tree / "private").chmod(0o700)
    write_file(tree / "private" / "local.key", private_pem, 0o600)
    write_file(tree / "local.pub", public_pem, 0o644)
    files = dict(side.plan.files)
    files.update(override or {})
    for path, f in files.items():
        if path.startswith("/etc/") and path != IKED_CONF:
            # the gateway's /etc as the program leaves it (pf.conf, sysctl.conf, ... included)
            write_file(side.etc / path[len("/etc/") :], f.content, f.mode)
    conf = files[IKED_CONF]
    write_file(side.conf, conf.content, conf.mode)


def start_iked(side: Side, logdir: Path) -> None:
    script = (
        f"mount --bind {side.tree} /etc/iked && ulimit -n 1024 && "
        f"exec /usr/sbin/iked -dv -f {side.conf} -s {side.sock}"
    )
    logf = (logdir / f"iked-{side.plan.name}.log").open("ab")
    logf.write(f"==== start {time.time():.3f}\n".encode())
    logf.flush()
    side.iked = subprocess.Popen(
        ["ip", "netns", "exec", side.gw, "unshare", "-m", "--propagation", "private", "sh", "-c", script],
        stdout=logf,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    logf.close()
    log(f"iked {side.gw} started pid {side.iked.pid}")


def stop_proc(p: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if p is None or p.poll() is not None:
        return
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        return
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=5)


def stop_iked(side: Side) -> None:
    stop_proc(side.iked)
    side.iked = None
    # the privsep children share the process group; make sure none is left holding UDP 500
    deadline = time.monotonic() + 5
    while udp500_bound(side.gw) and time.monotonic() < deadline:
        time.sleep(0.1)


def udp500_bound(ns: str) -> bool:
    out = run(["ss", "-Huln", "sport", "=", ":500"], ns=ns, check=False)
    return bool(out.strip())


def wait_listening(sides: Iterable[Side], timeout: float = LISTEN_TIMEOUT) -> float:
    """Wait until every side's iked has UDP 500 bound; returns the time the last one did."""
    pending = list(sides)
    deadline = time.monotonic() + timeout
    while pending:
        for s in list(pending):
            if udp500_bound(s.gw):
                pending.remove(s)
            elif s.iked is None or s.iked.poll() is not None:
                raise RuntimeError(f"iked in {s.gw} exited before listening (see iked-{s.plan.name}.log)")
        if not pending:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"iked not listening after {timeout:.0f}s in {[s.gw for s in pending]}")
        time.sleep(0.1)
    return time.time()


def child_sas(ns: str) -> int:
    out = run(["ip", "xfrm", "state"], ns=ns, check=False)
    return out.count("mode tunnel")


def flush_xfrm(ns: str) -> None:
    run(["ip", "xfrm", "state", "flush"], ns=ns, check=False)
    run(["ip", "xfrm", "policy", "flush"], ns=ns, check=False)


# --------------------------------------------------------------------------- OpenBSD stand-ins

#: What the program's bootstrap calls on OpenBSD, mapped to the lab: each call is logged to
#: $CCVPN_CALLS and the rehearsal does what it asked after the script returns (start/restart
#: the gateway's own iked, re-apply the iptables guard that stands in for pf).
OPENBSD_SHIMS = {
    "rcctl": """#!/bin/sh
echo "rcctl $*" >> "$CCVPN_CALLS"
case "$1 $2" in
  # rcctl(8) check exits 0 when the daemon runs; the lab's iked runs when UDP 500 is bound.
  "check iked") [ -n "$(ss -Huln sport = :500)" ] ;;
esac
""",
    "pfctl": """#!/bin/sh
echo "pfctl $*" >> "$CCVPN_CALLS"
""",
    "sysctl": "#!/bin/sh\necho \"sysctl $*\" >> \"$CCVPN_CALLS\"\n",
    "ifconfig": "#!/bin/sh\necho \"ifconfig $*\" >> \"$CCVPN_CALLS\"\n",
}
#: A clock that runs 20 s per `date +%s` reading, and a `sleep` of 1 s (see Rehearsal.run_check).
CLOCK_SHIMS = {
    "date": """#!/bin/sh
n=$(cat "$CCVPN_CLOCK")
echo $((n + 1)) > "$CCVPN_CLOCK"
if [ "$1" = "+%s" ]; then echo $(( $(/bin/date +%s) + 20 * n )); else exec /bin/date "$@"; fi
""",
    "sleep": "#!/bin/sh\nexec /bin/sleep 1\n",
}


def write_shims(folder: Path, shims: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in shims.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


def run_bootstrap(side: Side, script: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """The program's bootstrap, unchanged, as root on the gateway (`doas -n /bin/sh -s` reads it
    from stdin), with the gateway's own /etc bound over /etc: the files land where its iked reads
    them. Returns the run and the OpenBSD commands it called."""
    etc = side.etc
    group = Path("/etc/group").read_text()
    (etc / "group").write_text(group if "\nwheel:" in f"\n{group}" else group + "wheel:x:0:root\n")
    (etc / "passwd").write_text(Path("/etc/passwd").read_text())
    calls = side.dir / "openbsd-calls.log"
    calls.write_text("")
    shims = write_shims(RUN / "openbsd-shims", OPENBSD_SHIMS)
    env = {"PATH": f"{shims}:/usr/sbin:/usr/bin:/sbin:/bin", "CCVPN_CALLS": str(calls)}
    wrapper = f"mount --bind {etc} /etc && exec /bin/sh -s"
    p = subprocess.run(["ip", "netns", "exec", side.gw, "unshare", "-m", "--propagation", "private",
                        "/bin/sh", "-c", wrapper], input=script, capture_output=True, text=True,
                       timeout=120, env=env)
    log(f"bootstrap {side.gw} -> {p.returncode}\n{p.stdout}{p.stderr}")
    return p, calls.read_text().splitlines()


# --------------------------------------------------------------------------- pings


def first_reply(ns: str, dst: str, timeout: float) -> float | None:
    """Ping every 0.1 s until one echo is answered; the wall-clock time of the answer."""
    p = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "ping",
            "-n",
            "-D",
            "-c",
            "1",
            "-i",
            "0.1",
            "-W",
            "1",
            "-w",
            str(int(timeout)),
            dst,
        ],
        capture_output=True,
        text=True,
    )
    m = re.search(r"^\[(\d+\.\d+)\] \d+ bytes from", p.stdout, re.M)
    return float(m.group(1)) if m else None


def ping_count(ns: str, dst: str, count: int, interval: float = 0.2) -> tuple[int, int]:
    p = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "ping",
            "-n",
            "-q",
            "-c",
            str(count),
            "-i",
            str(interval),
            "-W",
            "2",
            dst,
        ],
        capture_output=True,
        text=True,
    )
    m = re.search(r"(\d+) packets transmitted, (\d+) received", p.stdout)
    log(f"ping {ns} -> {dst}: {p.stdout.strip().splitlines()[-2:] if p.stdout else p.stderr}")
    return (int(m.group(1)), int(m.group(2))) if m else (count, 0)


def ping_many(jobs: Sequence[tuple[str, str]], count: int = 3) -> list[tuple[int, int]]:
    """Ping several (namespace, destination) pairs at once."""
    procs = [
        subprocess.Popen(
            ["ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "2", dst],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for ns, dst in jobs
    ]
    out: list[tuple[int, int]] = []
    for (ns, dst), p in zip(jobs, procs, strict=True):
        stdout, _ = p.communicate()
        m = re.search(r"(\d+) packets transmitted, (\d+) received", stdout)
        res = (int(m.group(1)), int(m.group(2))) if m else (count, 0)
        log(f"ping {ns} -> {dst}: {res}")
        out.append(res)
    return out


def wrong_psk(conf: str) -> str | None:
    """iked.conf with every ``psk "..."`` / ``psk 0x...`` made wrong (None when there is none)."""
    pattern = r'\bpsk\s+("(?:[^"\\]|\\.)*"|0x[0-9A-Fa-f]+)'

    def repl(m: re.Match[str]) -> str:
        old = m.group(1)
        inner = old[1:-1] if old.startswith('"') else old
        return f'psk "{inner}-lab-wrong"'

    text, n = re.subn(pattern, repl, conf)
    return text if n else None


# --------------------------------------------------------------------------- capture


def pcap_cleartext(path: Path) -> tuple[int, int]:
    """(cleartext packets, ICMP errors about IKE/NAT-T) in a pcap written with the cleartext filter."""
    try:
        data = path.read_bytes()
    except OSError:
        return 0, 0
    if len(data) < 24:
        return 0, 0
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off, clear, icmp_ike = 24, 0, 0
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8 : off + 12])[0]
        pkt = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        ip = pkt[14:] if linktype == 1 else pkt
        if len(ip) >= 28 and ip[9] == 1:
            ihl = (ip[0] & 0xF) * 4
            icmp = ip[ihl:]
            if len(icmp) >= 8 + 20 + 4 and icmp[0] == 3:
                inner = icmp[8:]
                iihl = (inner[0] & 0xF) * 4
                if inner[9] == 17 and len(inner) >= iihl + 4:
                    sport, dport = struct.unpack(">HH", inner[iihl : iihl + 4])
                    if {sport, dport} & {500, 4500}:
                        icmp_ike += 1
                        continue
        clear += 1
    return clear, icmp_ike


# --------------------------------------------------------------------------- the rehearsal


class Rehearsal:
    def __init__(self, plan: LabPlan, logdir: Path) -> None:
        self.plan = plan
        self.logdir = logdir
        a, b = plan.gateways
        self.sides = (Side(0, a, b), Side(1, b, a))
        self.keys: dict[str, tuple[str, str]] = {}
        self.failures: list[str] = []
        self.result: dict[str, Any] = {}
        self.tcpdump: subprocess.Popen[bytes] | None = None
        self.pcap = logdir / "inet-cleartext.pcap"

    # ---- helpers
    def fail(self, msg: str) -> None:
        self.failures.append(msg)
        progress("FAIL: " + msg)

    def start_both(self) -> float:
        for s in self.sides:
            start_iked(s, self.logdir)
        return wait_listening(self.sides)

    def stop_both(self) -> None:
        for s in self.sides:
            stop_iked(s)

    def first_hosts(self) -> tuple[tuple[str, str], tuple[str, str]]:
        a, b = self.sides
        ca, cb = a.plan.workload_cidrs[0], b.plan.workload_cidrs[0]
        return (a.hosts[ca], a.host_ip(ca)), (b.hosts[cb], b.host_ip(cb))

    def all_pairs(self, count: int = 3) -> tuple[bool, list[str]]:
        a, b = self.sides
        jobs: list[tuple[str, str]] = []
        labels: list[str] = []
        for x, y in ((a, b), (b, a)):
            for cx, nsx in x.hosts.items():
                for cy in y.hosts:
                    jobs.append((nsx, y.host_ip(cy)))
                    labels.append(f"{x.plan.name}:{cx} -> {y.plan.name}:{cy}")
        res = ping_many(jobs, count)
        bad = [lbl for lbl, (_, recv) in zip(labels, res, strict=True) if recv == 0]
        return not bad, bad

    def inet(self) -> dict[str, int]:
        return ipt_counts("inet")

    def iked_log(self, side: Side) -> Path:
        return self.logdir / f"iked-{side.plan.name}.log"

    def tunnel_keys(self, side: Side) -> tuple[str, str]:
        return self.keys[side.plan.name]

    # ---- phases
    def setup(self) -> None:
        progress("loading modules")
        prepare_kernel()
        # warm iked up (the first one after boot is slow) while the network is built
        warm = self.start_warmup()
        progress("building namespaces")
        build_inet()
        for s in self.sides:
            build_edge(s)
            sync_hosts(s)
            guard_rules(s)
        inet_counters()
        for s in self.sides:
            pub = public_pem_of(s.plan.private_key_pem)
            self.keys[s.plan.name] = (s.plan.private_key_pem, pub)
            install_iked_files(s, *self.keys[s.plan.name])
        progress("waiting for the warm-up iked")
        t = time.monotonic()
        try:
            wait_listening([warm], timeout=60)
            self.result["warmup_s"] = round(time.monotonic() - t, 2)
        except RuntimeError as e:
            log(f"warm-up: {e}")
        stop_iked(warm)
        run(["ip", "netns", "del", warm.gw], check=False)
        self.tcpdump = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                "inet",
                "tcpdump",
                "-i",
                "to-a",
                "-n",
                "-U",
                "-Z",
                "root",
                "-w",
                str(self.pcap),
                "ip and not (udp port 500 or udp port 4500 or esp)",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def start_warmup(self) -> Side:
        a = self.sides[0]
        warm_plan = GatewayPlan(
            name="warmup",
            public_ip="192.0.2.1",
            private_ip="192.0.2.2",
            gateway_subnet="192.0.2.0/24",
            workload_cidrs=("192.0.2.0/24",),
            files={
                IKED_CONF: PushedFile(
                    'ikev2 "warmup" passive esp from 192.0.2.1 to 192.0.2.3 psk "warmup"\n', 0o600
                )
            },
            private_key_pem=a.plan.private_key_pem,
        )
        ws = Side(0, warm_plan, a.peer, gw="warm")
        make_ns(ws.gw, forward=False)
        install_iked_files(ws, a.plan.private_key_pem, "")
        start_iked(ws, self.logdir)
        return ws

    def tunnel(self) -> None:
        progress(f"starting iked ({self.plan.auth_mode}) on both gateways")
        listen = self.start_both()
        progress("both daemons listening on UDP 500")
        (ns_a, _), (_, ip_b) = self.first_hosts()
        ts = first_reply(ns_a, ip_b, TUNNEL_TIMEOUT)
        if ts is None:
            self.fail(f"no ping across the tunnel within {TUNNEL_TIMEOUT:.0f}s of both daemons listening")
            self.result["tunnel_s"] = None
            return
        self.result["tunnel_s"] = round(ts - listen, 2)
        progress(f"tunnel up: first ping answered {ts - listen:.2f}s after both daemons listened")

    def pings(self) -> None:
        (ns_a, ip_a), (ns_b, ip_b) = self.first_hosts()
        n = self.plan.pings
        ab = ping_count(ns_a, ip_b, n)
        ba = ping_count(ns_b, ip_a, n)
        self.result["pings"] = {"a_to_b": list(ab), "b_to_a": list(ba)}
        progress(f"pings a->b {ab[1]}/{ab[0]}, b->a {ba[1]}/{ba[0]}")
        for label, (sent, recv) in (("a->b", ab), ("b->a", ba)):
            if recv != sent or sent != n:
                self.fail(f"pings {label}: {recv}/{sent} answered")
        ok, bad = self.all_pairs()
        self.result["all_pairs_ok"] = ok
        progress(f"every local CIDR host -> every remote CIDR host: {'ok' if ok else 'FAILED ' + str(bad)}")
        if not ok:
            self.fail(f"unreachable pairs: {bad}")
        self.result["child_sas"] = {s.plan.name: child_sas(s.gw) for s in self.sides}

    def run_check(self, side: Side, fast_clock: bool = False) -> subprocess.CompletedProcess[str]:
        """The program's tunnel check, unchanged, on one gateway as `doas -n /bin/sh -s` runs it.

        ikectl talks to /var/run/iked.sock; each lab iked has its own socket, bound there in a
        private mount namespace. ``fast_clock`` puts `date`/`sleep` stand-ins first on PATH whose
        clock runs 20 s per reading, so a check that must time out does so in seconds; what it
        decides from is still the real ikectl output.
        """
        script = self.plan.check_script or ""
        # /var/run is /run here; /run is the guest's own tmpfs.
        wrapper = f"touch /run/iked.sock && mount --bind {side.sock} /run/iked.sock && exec /bin/sh -s"
        env = dict(os.environ)
        if fast_clock:
            clock = write_shims(RUN / "clock", CLOCK_SHIMS)
            ticks = RUN / f"clock-{side.gw}"
            ticks.write_text("0")
            env.update(PATH=f"{clock}:{env.get('PATH', '/usr/bin:/bin')}", CCVPN_CLOCK=str(ticks))
        return subprocess.run(["ip", "netns", "exec", side.gw, "unshare", "-m", "--propagation", "private",
                               "/bin/sh", "-c", wrapper], input=script, capture_output=True, text=True,
                              timeout=300, env=env)

    def check_script(self) -> None:
        """Run the program's own tunnel check on each gateway: it must say `tunnel: up`, exit 0."""
        if self.plan.check_script is None:
            return
        outputs = {}
        for s in self.sides:
            p = self.run_check(s)
            outputs[s.plan.name] = p.stdout
            first = (p.stdout.strip().splitlines() or ["no output"])[0]
            progress(f"program's tunnel check on {s.plan.name}: {first!r} (exit {p.returncode})")
            if first != "tunnel: up" or p.returncode != 0:
                self.fail(f"the program's tunnel check said {first!r} (exit {p.returncode}) on "
                          f"{s.plan.name}: {p.stderr.strip()}")
        self.result["tunnel_check"] = outputs

    def check_fails_while_down(self) -> None:
        """The same check, unchanged, while the tunnel cannot come up: it must fail the update."""
        if self.plan.check_script is None:
            return
        exits = {}
        for s in self.sides:
            p = self.run_check(s, fast_clock=True)
            exits[s.plan.name] = p.returncode
            first = (p.stdout.strip().splitlines() or ["no output"])[0]
            progress(f"wrong key: program's tunnel check on {s.plan.name}: {first!r} (exit {p.returncode})")
            if p.returncode == 0 or first != "tunnel: down":
                self.fail(f"wrong key: the program's tunnel check passed on {s.plan.name} ({first!r})")
            self.result.setdefault("wrong_key_check_stderr", {})[s.plan.name] = p.stderr[-2000:]
        self.result["wrong_key_check_exit"] = exits

    def hitless(self) -> None:
        """Configures that leave iked.conf alone, applied to both gateways while pings flow."""
        if not self.plan.reconfigure:
            return
        (ns_a, _), (_, ip_b) = self.first_hosts()
        pinger = subprocess.Popen(["ip", "netns", "exec", ns_a, "ping", "-n", "-q", "-i", "0.1", "-W", "1",
                                   ip_b], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(1)
        statuses: dict[str, list[str]] = {s.plan.name: [] for s in self.sides}
        restarts = 0
        for n, scripts in enumerate(self.plan.reconfigure, start=1):
            for s, script in zip(self.sides, scripts, strict=True):
                p, calls = run_bootstrap(s, script)
                status = next((ln for ln in p.stdout.splitlines() if ln.startswith("cross-cloud-vpn: ")),
                              f"exit {p.returncode}: {p.stderr.strip()[-300:]}")
                statuses[s.plan.name].append(status)
                progress(f"configure round {n} on {s.plan.name}: {status}")
                if p.returncode != 0:
                    self.fail(f"configure round {n} on {s.plan.name} failed: {status}")
                if any(c.startswith("pfctl -f ") for c in calls):
                    guard_rules(s)
                if any(c in ("rcctl start iked", "rcctl restart iked") for c in calls):
                    restarts += 1
                    stop_iked(s)
                    start_iked(s, self.logdir)
                    wait_listening([s])
        time.sleep(2)
        pinger.send_signal(signal.SIGINT)
        out, _ = pinger.communicate(timeout=10)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        sent, got = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        self.result["hitless_pings"] = [sent, got]
        self.result["hitless_lost"] = sent - got if m else None
        self.result["hitless_status"] = statuses
        self.result["hitless_iked_restarts"] = restarts
        progress(f"configures without an iked.conf change: {sent - got} of {sent} pings lost, "
                 f"{restarts} iked (re)starts")
        if not m or sent == 0:
            self.fail("hitless: no pings measured")
        elif sent != got:
            self.fail(f"hitless: {sent - got} of {sent} pings lost while configuring")
        if restarts:
            self.fail(f"hitless: the bootstrap (re)started iked {restarts} times with iked.conf unchanged")

    def restart(self) -> None:
        each: dict[str, float | None] = {}
        (ns_a, _), (_, ip_b) = self.first_hosts()
        for s in self.sides:
            if first_reply(ns_a, ip_b, 30) is None:
                self.fail(f"tunnel not up before restarting {s.plan.name}")
            progress(f"restarting iked on {s.plan.name}")
            t0 = time.time()
            stop_iked(s)
            log(f"after stopping {s.gw}: {child_sas(s.gw)} tunnel-mode states left")
            start_iked(s, self.logdir)
            ts = first_reply(ns_a, ip_b, RESTART_TIMEOUT)
            each[s.plan.name] = None if ts is None else round(ts - t0, 2)
            if ts is None:
                self.fail(
                    f"pings did not flow again within {RESTART_TIMEOUT:.0f}s of restarting {s.plan.name}"
                )
            else:
                progress(f"pings flow again {ts - t0:.2f}s after restarting {s.plan.name}")
        self.result["restart_s_each"] = each
        vals = list(each.values())
        self.result["restart_s"] = (
            None if any(v is None for v in vals) else max(v for v in vals if v is not None)
        )

    def wrong_key(self) -> None:
        a, b = self.sides
        override: dict[str, PushedFile] = {}
        if self.plan.auth_mode == "pubkey":
            path = PUBKEY_DIR + b.plan.public_ip
            _, wrong_pub = make_keypair()
            override[path] = PushedFile(wrong_pub, a.plan.files[path].mode)
            what = f"{a.plan.name}'s copy of {b.plan.name}'s public key replaced by a fresh key"
        else:
            conf = a.plan.files[IKED_CONF]
            text = wrong_psk(conf.content)
            if text is None:
                self.fail('psk mode but no psk "..." / psk 0x... in iked.conf to change')
                return
            override[IKED_CONF] = PushedFile(text, conf.mode)
            what = f"the lab changed the psk in {a.plan.name}'s iked.conf"
        progress(f"wrong key: {what}; restarting both daemons")
        self.stop_both()
        for s in self.sides:
            flush_xfrm(s.gw)
        install_iked_files(a, *self.tunnel_keys(a), override=override)
        before = self.inet()
        g_before = [guard_drops(s) for s in self.sides]
        marks = {s.plan.name: self.iked_log(s).stat().st_size for s in self.sides}
        self.start_both()
        time.sleep(WRONG_KEY_SETTLE)
        (ns_a, ip_a), (ns_b, ip_b) = self.first_hosts()
        res = ping_many([(ns_a, ip_b), (ns_b, ip_a)], self.plan.pings)
        delivered = sum(r for _, r in res)
        sas = sum(child_sas(s.gw) for s in self.sides)
        after = self.inet()
        clear = after.get("cleartext", 0) - before.get("cleartext", 0)
        self.result["wrong_key_delivered"] = delivered
        self.result["wrong_key_child_sas"] = sas
        self.result["wrong_key_cleartext"] = clear
        self.result["wrong_key_ike_packets"] = after.get("ike", 0) - before.get("ike", 0)
        self.result["wrong_key_guard_drops"] = sum(guard_drops(s) for s in self.sides) - sum(g_before)
        rejected = []
        for s in self.sides:
            with self.iked_log(s).open("rb") as fh:
                fh.seek(marks[s.plan.name])
                if b"authentication failed" in fh.read():
                    rejected.append(s.plan.name)
        self.result["wrong_key_auth_failed"] = rejected
        if not rejected:
            self.fail("wrong key: neither iked logged 'authentication failed'")
        progress(f"wrong key: {delivered} pings delivered, {sas} child SAs, {clear} cleartext packets")
        self.check_fails_while_down()
        if delivered:
            self.fail(f"wrong key: {delivered} pings delivered")
        if sas:
            self.fail(f"wrong key: {sas} tunnel-mode SAs")
        if clear:
            self.fail(f"wrong key: {clear} cleartext packets on the internet link")
        progress("restoring the right key")
        self.stop_both()
        install_iked_files(a, *self.tunnel_keys(a))
        t0 = time.time()
        self.start_both()
        ts = first_reply(ns_a, ip_b, TUNNEL_TIMEOUT)
        self.result["restore_s"] = None if ts is None else round(ts - t0, 2)
        if ts is None:
            self.fail("tunnel did not come back after restoring the key")

    def change(self) -> None:
        if self.plan.changed is None:
            self.result["change_ok"] = None
            return
        progress("change: stopping both daemons, applying the changed files")
        self.stop_both()
        new_cidrs: list[str] = []
        for s, g in zip(self.sides, self.plan.changed, strict=True):
            s.plan = g
        for s, g in zip(self.sides, self.plan.changed, strict=True):
            s.peer = self.sides[1 - s.index].plan
            new_cidrs += [f"{g.name}:{c}" for c in sync_hosts(s)]
            guard_rules(s)
            install_iked_files(s, *self.tunnel_keys(s))
        progress(f"change: new workload CIDRs {new_cidrs}; starting both daemons")
        t0 = self.start_both()
        (ns_a, _), (_, ip_b) = self.first_hosts()
        ts = first_reply(ns_a, ip_b, TUNNEL_TIMEOUT)
        if ts is None:
            self.fail("change: tunnel did not come back")
            self.result["change_ok"] = False
            return
        self.result["change_tunnel_s"] = round(ts - t0, 2)
        ok, bad = self.all_pairs()
        self.result["change_ok"] = ok
        self.result["change_new_cidrs"] = new_cidrs
        self.result["change_child_sas"] = {s.plan.name: child_sas(s.gw) for s in self.sides}
        progress(f"change: every pair incl. the new CIDRs {'ok' if ok else 'FAILED ' + str(bad)}")
        if not ok:
            self.fail(f"change: unreachable pairs {bad}")

    def finish(self) -> None:
        self.stop_both()
        if self.tcpdump is not None:
            time.sleep(0.5)
            stop_proc(self.tcpdump, signal.SIGINT)
        counts = self.inet()
        pcap_clear, pcap_icmp_ike = pcap_cleartext(self.pcap)
        self.result["icmp_errors_about_ike_tcpdump"] = pcap_icmp_ike
        self.result["cleartext_iptables"] = counts.get("cleartext", 0)
        self.result["cleartext_tcpdump"] = pcap_clear
        self.result["cleartext"] = max(counts.get("cleartext", 0), pcap_clear)
        self.result["icmp_errors"] = counts.get("icmperr", 0)
        self.result["ike_packets"] = counts.get("ike", 0)
        self.result["esp_packets"] = counts.get("esp", 0)
        self.result["guard_drops"] = sum(s.guard_total + guard_drops(s) for s in self.sides)
        if self.result["cleartext"]:
            self.fail(f"{self.result['cleartext']} cleartext packets on the internet link")
        if not self.result["esp_packets"]:
            self.fail("no ESP on the internet link")

    def run(self) -> dict[str, Any]:
        t0 = time.monotonic()
        problems = self.plan.problems()
        if problems:
            return {"ok": False, "failures": [f"plan: {p}" for p in problems]}
        try:
            self.setup()
            self.tunnel()
            if self.result.get("tunnel_s") is not None:
                self.pings()
                self.check_script()
                self.hitless()
                self.restart()
                self.wrong_key()
                self.change()
        except Exception as e:
            log(traceback.format_exc())
            self.fail(f"guest error: {e}")
        finally:
            try:
                self.finish()
            except Exception as e:
                log(traceback.format_exc())
                self.fail(f"guest error while finishing: {e}")
        self.result["failures"] = self.failures
        self.result["ok"] = not self.failures
        self.result["guest_s"] = round(time.monotonic() - t0, 1)
        return self.result


def run_guest(module: str, argv: Sequence[str], rehearse: Callable[[str, Path], dict[str, Any]]) -> int:
    """A guest entry point: ``rehearse(plan JSON, log dir)`` -> the result file and RESULT_MARK.

    Whatever goes wrong inside becomes a failed result, so the host always gets an answer.
    """
    global LOG
    if len(argv) != 3:
        print(f"usage: python3 -m {module} PLAN.json RESULT.json LOGDIR", file=sys.stderr)
        return 2
    plan_path, result_path, logdir = Path(argv[0]), Path(argv[1]), Path(argv[2])
    LOG = Log(logdir / "guest.log")
    try:
        result = rehearse(plan_path.read_text(), logdir)
    except Exception as e:
        log(traceback.format_exc())
        result = {"ok": False, "failures": [f"guest error: {e}"]}
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True))
    tmp.rename(result_path)
    print(RESULT_MARK, flush=True)
    return 0


def main(argv: Sequence[str]) -> int:
    def rehearse(plan: str, logdir: Path) -> dict[str, Any]:
        return Rehearsal(LabPlan.from_json(plan), logdir).run()

    return run_guest("cross_cloud_vpn.lab.guest", argv, rehearse)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
