"""What runs inside the user-mode-linux guest for the HA rehearsal (:mod:`.ha`).

Run as ``python3 -m cross_cloud_vpn.lab.ha_guest PLAN.json RESULT.json LOGDIR``. Topology (IPv6
off everywhere)::

    h-a 10.10.1.10 -- vpc-a (VPC router 10.10.0.1, IGW 1:1 NAT for A1/A2, route server .230) --+
                       |br0: gw-a1 10.10.0.10, gw-a2 10.10.0.11                                inet
    h-b 10.20.1.10 -- vnet-b (VNet router 10.20.0.1, 1:1 NAT for B1/B2) ------------------------+
                       |br0: gw-b1 10.20.0.10, gw-b2 10.20.0.11

* Each gateway runs real iked (its rendered iked.conf, pubkey auth with ECDSA P-256 keys) and
  real OpenBGPD (its rendered bgpd.conf; the lab adds one ``socket`` line so four daemons can run
  side by side). Pair 1 is A1<->B1, pair 2 A2<->B2.
* AWS steering, route-server mode: an OpenBGPD in vpc-a stands in for the VPC Route Server
  (passive, takes only the Azure prefix, one best path); a loop reads its best path every 0.5 s
  (``bgpctl show rib``) and points vpc-a's route for the Azure workload at that next hop, as the
  Route Server programs a route table.
* AWS steering, route-tables mode: A1 and A2 each run the program's steering script
  (``openbsd/steer.py``, the text ``render_gateway`` pushes) under ``sh`` with curl as its fetch
  command, against a fake EC2 API (10.10.0.240, plain HTTP, every presigned URL checked with
  botocore) and a fake IMDS (169.254.169.254, the script's default) in vpc-a (:mod:`.ha_aws`); an
  accepted ReplaceRoute/CreateRoute points vpc-a's route for the Azure workload at that
  interface's gateway. Its health test is its real default, ``bgpctl show neighbor <peer> | grep
  -q Established``, with that gateway's bgpd socket bound on bgpctl's default path in a private
  mount namespace; ``logger`` is a stand-in that appends to ``steer-<name>.log``. The probe
  responder the standby asks (ifstated + httpd on OpenBSD) is stood in for by a loop applying
  the ifstated rule every second to a file and a python ``SimpleHTTPRequestHandler`` serving its
  folder on the gateway's private IP and the probe port (GET /up: 200 while the file exists,
  else 404).
* Azure steering: every 5 s (Azure's shortest probe interval) a probe asks each B gateway's bgpd
  whether its session through the tunnel is Established (what ifstated + httpd would answer the
  load balancer's probe with) and points vnet-b's route for the AWS workload at the first healthy
  one, B1 before B2.
* The guard (pf's job): in each gateway, forwarded workload traffic and its own packets to the
  peer gateway's private address are dropped unless they leave under an IPsec policy.
* Streams: one UDP datagram every 0.2 s each way between the two workload hosts; the receivers
  log arrival times, so each direction's gap is measured on its own. Beside them a ping every
  0.2 s from each host (``ping -D``), whose answers need both directions at once.
* Cleartext: ``inet`` counts every packet by kind (as the single-gateway lab does) with tcpdump as a
  second opinion; each cloud router also counts cleartext from a gateway toward the other cloud.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..openbsd.probe import DEFAULT_CHECK_INTERVAL, bgp_established_command
from ..openbsd.steer import STEER_SCRIPT_PATH
from . import guest
from .guest import (
    IPT,
    RUN,
    TRANSIT,
    Side,
    addr,
    build_inet,
    child_sas,
    inet_counters,
    install_iked_files,
    ipt_counts,
    log,
    make_ns,
    nth,
    pcap_cleartext,
    prepare_kernel,
    progress,
    run,
    start_iked,
    stop_iked,
    stop_proc,
    veth,
    wait_listening,
    write_file,
)
from .ha import (
    AWS_INTERFACES,
    AWS_REGION,
    AWS_SUBNET,
    AWS_VPC_ROUTER,
    AWS_WORKLOAD,
    AZURE_SUBNET,
    AZURE_VNET_ROUTER,
    AZURE_WORKLOAD,
    EC2_ENDPOINT_IP,
    FAULTS,
    IMDS_IP,
    PROBE_PORT,
    ROUTE_SERVER_IP,
    ROUTE_TABLE_IDS,
    HaPlan,
    peer_of,
)
from .keys import public_pem_of

STREAM_INTERVAL = 0.2
STREAM_PORT = 5001
PROBE_INTERVAL = 5.0
ROUTE_SERVER_POLL = 0.5
UP_TIMEOUT = 120.0
OBSERVE_S = 20.0
RESUME_TIMEOUT = 40.0
#: OpenBGPD waits an idle-hold time after a session error, doubling with each flap (30, 60, 120 s):
#: pair 1 flaps three times in this rehearsal.
HEAL_TIMEOUT = 180.0
CLOUD = {"a": "vpc-a", "b": "vnet-b"}
HOST = {"a": "h-a", "b": "h-b"}
ROUTER = {"a": AWS_VPC_ROUTER, "b": AZURE_VNET_ROUTER}
SUBNET = {"a": AWS_SUBNET, "b": AZURE_SUBNET}
WORKLOAD = {"a": AWS_WORKLOAD, "b": AZURE_WORKLOAD}
#: Where Debian's bgpctl looks for the control socket when given none: SOCKET_NAME, then "." and
#: the routing table (bgpctl.c: "%s.%d", as on OpenBSD with /var/run/bgpd.sock.0).
BGPCTL_DEFAULT_SOCK = Path("/run/openbgpd/bgpd.sock.0")
#: Route-tables mode: the fetch command the script is given (ftp -o - on OpenBSD: the body on
#: stdout, a non-zero exit on a connection error or an HTTP error status).
STEER_FETCH = "curl -fsS"
#: logger(1) stand-in (no syslog in the guest): one timestamped line per message in the file
#: named by $CCVPN_LAB_STEER_LOG.
LOGGER_STANDIN = """#!/bin/sh
tag=logger
while getopts t: o; do [ "$o" = t ] && tag=$OPTARG; done
shift $((OPTIND - 1))
printf '%s %s: %s\\n' "$(date +%s.%N)" "$tag" "$*" >> "$CCVPN_LAB_STEER_LOG"
"""
#: httpd stand-in: serves folder $3 on $1 port $2 (GET /up: 200 while the file exists, else
#: 404), with no reverse DNS lookup of its own address (HTTPServer.server_bind does one).
HTTPD_STANDIN = """import functools, http.server, socketserver, sys
class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
Server((sys.argv[1], int(sys.argv[2])), functools.partial(Handler, directory=sys.argv[3])).serve_forever()
"""
#: ifstated stand-in (the rule ``openbsd/probe.py`` renders): start unhealthy (no file); every
#: $2 s run the test $3 with sh -c (as ifstated does); the file $1 exists exactly while it is
#: true, made or removed on a change of state only (ifstated's init blocks).
IFSTATED_STANDIN = """rm -f "$1"
while :; do
	if sh -c "$3" >/dev/null 2>&1; then [ -e "$1" ] || touch "$1"; else [ ! -e "$1" ] || rm -f "$1"; fi
	sleep "$2"
done
"""

UDP_STREAM = """import socket, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if mode == "recv":
    s.bind(("0.0.0.0", port))
    while True:
        data, _ = s.recvfrom(64)
        print(f"{time.time():.3f} {data.decode()}", flush=True)
seq, dst, interval = 0, sys.argv[3], float(sys.argv[4])
while True:
    try:
        s.sendto(str(seq).encode(), (dst, port))
    except OSError:
        pass
    seq += 1
    time.sleep(interval)
"""


def bgpctl(sock: Path, *args: str) -> str:
    p = subprocess.run(["bgpctl", "-s", str(sock), *args], capture_output=True, text=True, timeout=10)
    return p.stdout


def max_gap(arrivals: Sequence[float], start: float, end: float) -> float | None:
    """The longest time between consecutive arrivals that overlaps [start, end] (the stream's
    interval when nothing was lost); None when nothing arrived after ``start``."""
    if not any(t > start for t in arrivals):
        return None
    gaps = [b - a for a, b in itertools.pairwise(arrivals) if b > start and a < end]
    return round(max(gaps), 2) if gaps else None


class HaRehearsal:
    def __init__(self, plan: HaPlan, logdir: Path) -> None:
        self.plan = plan
        self.logdir = logdir
        self.sides: dict[str, Side] = {}
        for i, (name, g) in enumerate(plan.gateways.items()):
            self.sides[name] = Side(i % 2, g, plan.gateways[peer_of(name)], gw=f"gw-{name}")
        self.bgpd: dict[str, subprocess.Popen[bytes]] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pings: list[subprocess.Popen[bytes]] = []
        self.failures: list[str] = []
        self.result: dict[str, Any] = {}
        self.stop = threading.Event()
        self.steering: dict[str, str | None] = {"a": None, "b": None}
        self.events: list[tuple[float, str, str | None]] = []
        self.lock = threading.Lock()
        self.route_tables = plan.aws_steering == "route-tables"
        self.aws: Any = None  # the fake EC2/IMDS (route-tables mode)
        self.steerers: dict[str, subprocess.Popen[bytes]] = {}

    def fail(self, msg: str) -> None:
        self.failures.append(msg)
        progress("FAIL: " + msg)

    # ---- the network
    def build_cloud(self, letter: str, index: int) -> None:
        cloud, transit = CLOUD[letter], TRANSIT[index]
        make_ns(cloud, forward=True)
        veth("inet", f"to-{letter}", cloud, "outside")
        addr("inet", f"to-{letter}", f"{nth(transit, 1)}/30")
        addr(cloud, "outside", f"{nth(transit, 2)}/30")
        run(["ip", "-n", cloud, "route", "add", "default", "via", nth(transit, 1)])
        run(["ip", "-n", cloud, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", cloud, "link", "set", "br0", "up"])
        addr(cloud, "br0", f"{ROUTER[letter]}/24")
        if letter == "a" and self.route_tables:
            addr(cloud, "br0", f"{EC2_ENDPOINT_IP}/24")
            addr(cloud, "lo", f"{IMDS_IP}/32")
        elif letter == "a":
            addr(cloud, "br0", f"{ROUTE_SERVER_IP}/24")
        for name, side in self.sides.items():
            if name[0] != letter:
                continue
            g = side.plan
            make_ns(side.gw, forward=True)
            run(["sh", "-c", "echo 0 > /proc/sys/net/ipv4/conf/all/send_redirects"], ns=side.gw)
            veth(cloud, f"p-{name}", side.gw, "wan")
            run(["ip", "-n", cloud, "link", "set", f"p-{name}", "master", "br0"])
            addr(side.gw, "wan", f"{g.private_ip}/24")
            run(["ip", "-n", side.gw, "route", "add", "default", "via", ROUTER[letter]])
            run(["ip", "-n", "inet", "route", "add", f"{g.public_ip}/32", "via", nth(transit, 2)])
            run([IPT, "-t", "nat", "-A", "PREROUTING", "-i", "outside", "-d", g.public_ip, "-j", "DNAT",
                 "--to-destination", g.private_ip], ns=cloud)
            run([IPT, "-t", "nat", "-A", "POSTROUTING", "-o", "outside", "-s", g.private_ip, "-j", "SNAT",
                 "--to-source", g.public_ip], ns=cloud)
            self.guard(side)
        host = HOST[letter]
        make_ns(host, forward=False)
        veth(cloud, "wl", host, "eth0")
        addr(cloud, "wl", f"{nth(WORKLOAD[letter], 1)}/24")
        addr(host, "eth0", f"{nth(WORKLOAD[letter], 10)}/24")
        run(["ip", "-n", host, "route", "add", "default", "via", nth(WORKLOAD[letter], 1)])
        remote = "10.20.0.0/16" if letter == "a" else "10.10.0.0/16"
        # cleartext from a gateway toward the other cloud (the guard failing) is counted here ...
        run([IPT, "-A", "FORWARD", "-s", SUBNET[letter], "-d", remote, "-m", "comment", "--comment",
             "gwclear", "-j", "DROP"], ns=cloud)
        # ... and, with no route to the other cloud, the IGW drops private destinations.
        run([IPT, "-A", "FORWARD", "-o", "outside", "-d", "10.0.0.0/8", "-m", "comment", "--comment",
             "igwdrop", "-j", "DROP"], ns=cloud)

    def guard(self, side: Side) -> None:
        """pf's job on OpenBSD: nothing for the other cloud leaves without an IPsec policy."""
        local, remote = side.plan.workload_cidrs[0], side.peer.workload_cidrs[0]
        policy = ["-m", "policy", "--dir", "out", "--pol", "none", "-m", "comment", "--comment", "guard",
                  "-j", "DROP"]
        run([IPT, "-A", "FORWARD", "-s", local, "-d", remote, *policy], ns=side.gw)
        run([IPT, "-A", "OUTPUT", "-d", side.peer.private_ip, *policy], ns=side.gw)

    # ---- daemons
    def bgpd_sock(self, name: str) -> Path:
        return RUN / f"bgpd-{name}.sock"

    def start_bgpd(self, name: str, ns: str, conf: str) -> None:
        """Real bgpd on the rendered file; the only lab change is its own control socket."""
        path = RUN / f"bgpd-{name}.conf"
        write_file(path, f'socket "{self.bgpd_sock(name)}"\n{conf}', 0o600)
        logf = (self.logdir / f"bgpd-{name}.log").open("ab")
        self.bgpd[name] = subprocess.Popen(["ip", "netns", "exec", ns, "bgpd", "-d", "-f", str(path)],
                                           stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True)
        logf.close()

    def session_up(self, name: str) -> bool:
        peer_ip = self.sides[peer_of(name)].plan.private_ip
        return "BGP state = Established" in bgpctl(self.bgpd_sock(name), "show", "neighbor", peer_ip)

    def route_server_rib(self) -> list[tuple[str, str, str]]:
        """(flags, prefix, next hop) of every path the route server holds."""
        rows = []
        for line in bgpctl(self.bgpd_sock("rs"), "show", "rib").splitlines():
            m = re.match(r"\s*([*>IASE ]+?)\s+[NV!]?\s*(\d+\.\d+\.\d+\.\d+/\d+)\s+(\d+\.\d+\.\d+\.\d+)", line)
            if m:
                rows.append((m.group(1).strip(), m.group(2), m.group(3)))
        return rows

    def program(self, letter: str, via: str | None) -> None:
        """Point the cloud's route for the other side's workload at ``via`` (none: no route)."""
        with self.lock:
            if via == self.steering[letter]:
                return
            dest = WORKLOAD["b" if letter == "a" else "a"]
            if via is None:
                run(["ip", "-n", CLOUD[letter], "route", "del", dest], check=False)
            else:
                run(["ip", "-n", CLOUD[letter], "route", "replace", dest, "via", via])
            self.steering[letter] = via
            self.events.append((time.time(), letter, via))
            log(f"steering {CLOUD[letter]}: {dest} via {via}")

    def aws_steering(self) -> None:
        while not self.stop.is_set():
            best = [hop for flags, prefix, hop in self.route_server_rib()
                    if prefix == AZURE_WORKLOAD and ">" in flags]
            self.program("a", best[0] if best else None)
            self.stop.wait(ROUTE_SERVER_POLL)

    def azure_probe(self) -> None:
        while not self.stop.is_set():
            healthy = [self.sides[n].plan.private_ip for n in ("b1", "b2") if self.session_up(n)]
            self.program("b", healthy[0] if healthy else None)
            self.stop.wait(PROBE_INTERVAL)

    # ---- route-tables mode: the program's steering script on A1/A2, a fake EC2 and IMDS
    def start_fake_aws(self) -> None:
        from .ha_aws import FakeAws, make_instance  # botocore: only this mode needs it

        instances = {n: make_instance(n, self.sides[n].plan.private_ip, *AWS_INTERFACES[n])
                     for n in ("a1", "a2")}
        ip_of = {i.eni: i.private_ip for i in instances.values()}

        def on_route(cidr: str, eni: str) -> None:
            if cidr == AZURE_WORKLOAD:
                self.program("a", ip_of[eni])

        self.aws = FakeAws(instances, AWS_REGION, list(ROUTE_TABLE_IDS), "10.10.0.0/16", on_route)
        self.aws.serve(CLOUD["a"], EC2_ENDPOINT_IP, IMDS_IP)

    def spawn_with_bgpctl(self, name: str, argv: Sequence[str], log_name: str,
                          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """``argv`` in gw-<name>, in a private mount namespace where that gateway's bgpd socket is
        bound on bgpctl's default path: a plain ``bgpctl show neighbor ...`` asks this gateway's
        bgpd, as on the gateway itself."""
        logf = (self.logdir / log_name).open("ab")
        p = subprocess.Popen(["ip", "netns", "exec", self.sides[name].gw, "unshare", "-m", "--propagation",
                              "private", "sh", "-c", f'mount --bind "$0" {BGPCTL_DEFAULT_SOCK} && exec "$@"',
                              str(self.bgpd_sock(name)), *argv],
                             stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                             start_new_session=True)
        logf.close()
        return p

    def start_probe_responder(self, name: str) -> None:
        """ifstated + httpd stand-ins: GET http://<private ip>:<probe port>/up is 200 exactly
        while ``bgpctl show neighbor <peer> | grep -q Established`` (checked every second)."""
        folder = RUN / f"probe-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        test = bgp_established_command(self.sides[peer_of(name)].plan.private_ip)
        self.procs.append(self.spawn_with_bgpctl(
            name,
            ["sh", "-c", IFSTATED_STANDIN, "ifstated", str(folder / "up"), str(DEFAULT_CHECK_INTERVAL), test],
            f"probe-{name}.log"))
        self.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", self.sides[name].gw, sys.executable, "-c", HTTPD_STANDIN,
             self.sides[name].plan.private_ip, str(PROBE_PORT), str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            start_new_session=True))

    def start_steering(self, name: str) -> None:
        """The steering script, the very text the program pushes, run as rc.d runs it (sh SCRIPT);
        only the EC2 endpoint and the fetch command are the lab's (IMDS and health: defaults)."""
        script = RUN / f"steer-{name}.sh"
        write_file(script, self.sides[name].plan.files[STEER_SCRIPT_PATH].content, 0o755)
        bin_dir = RUN / "steer-bin"
        write_file(bin_dir / "logger", LOGGER_STANDIN, 0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CCVPN_")}
        env.update(PATH=f"{bin_dir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
                   CCVPN_STEER_FETCH=STEER_FETCH, CCVPN_STEER_EC2=f"http://{EC2_ENDPOINT_IP}",
                   CCVPN_LAB_STEER_LOG=str(self.logdir / f"steer-{name}.log"))
        self.steerers[name] = self.spawn_with_bgpctl(name, ["sh", str(script)], f"steer-{name}.out", env)

    def steer_log(self, name: str) -> list[str]:
        path = self.logdir / f"steer-{name}.log"
        return path.read_text().splitlines() if path.exists() else []

    def first_log_after(self, name: str, text: str, start: float, end: float) -> float | None:
        """Seconds from ``start`` to the first line of ``name``'s steering log holding ``text``."""
        for line in self.steer_log(name):
            stamp, _, message = line.partition(" ")
            try:
                t = float(stamp)
            except ValueError:
                continue
            if start <= t <= end and text in message:
                return round(t - start, 2)
        return None

    def thread(self, target: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                target()
            except Exception:
                log(traceback.format_exc())
                self.fail(f"steering loop {target.__name__} crashed")
        threading.Thread(target=guarded, daemon=True).start()

    def healthy(self) -> bool:
        """Every session up, the route server on A1, the probe on B1."""
        return (all(self.session_up(n) for n in self.sides)
                and self.steering["a"] == self.sides["a1"].plan.private_ip
                and self.steering["b"] == self.sides["b1"].plan.private_ip)

    def wait_healthy(self, timeout: float) -> float | None:
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.healthy():
                return time.time()
            time.sleep(0.5)
        return None

    # ---- streams
    def receivers(self) -> dict[str, Path]:
        return {"a_to_b": RUN / "recv-b.log", "b_to_a": RUN / "recv-a.log"}

    def start_streams(self) -> None:
        script = RUN / "udpstream.py"
        script.write_text(UDP_STREAM)
        for direction, src, dst in (("a_to_b", "a", "b"), ("b_to_a", "b", "a")):
            out = self.receivers()[direction].open("w")
            self.procs.append(subprocess.Popen(["ip", "netns", "exec", HOST[dst], sys.executable, str(script),
                                                "recv", str(STREAM_PORT)], stdout=out,
                                               stderr=subprocess.DEVNULL, start_new_session=True))
            out.close()
            self.procs.append(subprocess.Popen(["ip", "netns", "exec", HOST[src], sys.executable, str(script),
                                                "send", str(STREAM_PORT), nth(WORKLOAD[dst], 10),
                                                str(STREAM_INTERVAL)], stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL, start_new_session=True))
            # and a ping stream from the same host: its answers need both directions
            out = self.ping_log(src).open("w")
            self.pings.append(subprocess.Popen(["ip", "netns", "exec", HOST[src], "ping", "-n", "-D", "-i",
                                                str(STREAM_INTERVAL), "-W", "1", nth(WORKLOAD[dst], 10)],
                                               stdout=out, stderr=subprocess.DEVNULL, start_new_session=True))
            out.close()

    def ping_log(self, src: str) -> Path:
        return RUN / f"ping-from-{src}.log"

    def ping_replies(self, src: str) -> list[float]:
        text = self.ping_log(src).read_text()
        return [float(t) for t in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", text, re.M)]

    def arrivals(self, direction: str) -> list[float]:
        times = []
        for line in self.receivers()[direction].read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                times.append(float(parts[0]))
        return times

    def flowing(self, within: float = 1.5) -> bool:
        now = time.time()
        return all(any(t > now - within for t in self.arrivals(d)) for d in self.receivers())

    def counters(self) -> dict[str, int]:
        inet = ipt_counts("inet")
        clouds = [ipt_counts(CLOUD[x]) for x in "ab"]
        return {
            "cleartext": inet.get("cleartext", 0) + sum(c.get("gwclear", 0) for c in clouds),
            "igwdrop": sum(c.get("igwdrop", 0) for c in clouds),
            "guard": sum(ipt_counts(s.gw, chain).get("guard", 0) for s in self.sides.values()
                         for chain in ("FORWARD", "OUTPUT")),
        }

    # ---- faults
    def apply(self, name: str, kind: str, heal: bool) -> None:
        side = self.sides[name]
        if kind == "stop":
            if heal:
                start_iked(side, self.logdir)
            else:
                stop_iked(side)
        elif heal:
            run(["ip", "-n", side.gw, "link", "set", "wan", "up"])
            run(["ip", "-n", side.gw, "route", "replace", "default", "via", ROUTER[name[0]]])
        else:
            run(["ip", "-n", side.gw, "link", "set", "wan", "down"])

    def fault(self, label: str, name: str, kind: str) -> dict[str, Any]:
        before = self.counters()
        progress(f"fault {label}: {'stopping iked on' if kind == 'stop' else 'cutting the link of'} {name}")
        t0 = time.time()
        self.apply(name, kind, heal=False)
        time.sleep(OBSERVE_S)
        waited = OBSERVE_S
        while not self.flowing() and waited < RESUME_TIMEOUT:
            time.sleep(1)
            waited += 1
        resumed = self.flowing()
        if not resumed:
            self.fail(f"{label}: traffic did not flow both ways within {RESUME_TIMEOUT:.0f}s of the fault")
        steering_during = dict(self.steering)
        progress(f"fault {label}: traffic {'flows' if resumed else 'DOES NOT flow'} both ways; "
                 f"steering AWS via {steering_during['a']}, Azure via {steering_during['b']}; healing")
        t1 = time.time()
        self.apply(name, kind, heal=True)
        settled = self.wait_healthy(HEAL_TIMEOUT)
        if settled is None:
            self.fail(f"{label}: not back on pair 1 with all four sessions up within {HEAL_TIMEOUT:.0f}s")
            settled = time.time()
        time.sleep(3)
        if not self.flowing():
            self.fail(f"{label}: traffic does not flow both ways after fail-back")
        after = self.counters()
        return {"t_fault": t0, "t_heal": t1, "t_settled": settled + 3, "resumed": resumed,
                "steering_during": steering_during, "healed_s": round(settled - t1, 2),
                "cleartext": after["cleartext"] - before["cleartext"],
                "guard_drops": after["guard"] - before["guard"]}

    # ---- the run
    def setup(self) -> None:
        progress("loading modules")
        prepare_kernel()
        Path("/run/openbgpd").mkdir(parents=True, exist_ok=True)
        BGPCTL_DEFAULT_SOCK.touch()  # the mount point of each gateway's own socket (route-tables)
        progress("building namespaces (four gateways, two clouds)")
        build_inet()
        for i, letter in enumerate("ab"):
            self.build_cloud(letter, i)
        inet_counters()
        for name in ("a", "b"):
            pcap = self.logdir / f"inet-cleartext-{name}.pcap"
            self.procs.append(subprocess.Popen(
                ["ip", "netns", "exec", "inet", "tcpdump", "-i", f"to-{name}", "-n", "-U", "-Z", "root", "-w",
                 str(pcap), "ip and not (udp port 500 or udp port 4500 or esp)"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        for side in self.sides.values():
            install_iked_files(side, side.plan.private_key_pem, public_pem_of(side.plan.private_key_pem))

    def up(self) -> None:
        progress("starting four iked")
        for side in self.sides.values():
            start_iked(side, self.logdir)
        listen = wait_listening(self.sides.values())
        if self.route_tables:
            progress("starting four bgpd, the fake EC2/IMDS, A1/A2's probe responders and steering scripts")
        else:
            progress("starting four bgpd and the route server stand-in")
        for name, side in self.sides.items():
            self.start_bgpd(name, side.gw, side.plan.files["/etc/bgpd.conf"].content)
        if self.route_tables:
            self.start_fake_aws()
            for name in ("a1", "a2"):
                self.start_probe_responder(name)
            for name in ("a1", "a2"):
                self.start_steering(name)
        else:
            self.start_bgpd("rs", "vpc-a", self.plan.route_server_conf)
            self.thread(self.aws_steering)
        self.thread(self.azure_probe)
        settled = self.wait_healthy(UP_TIMEOUT)
        if settled is None:
            raise RuntimeError(f"not all four BGP sessions up and steered to pair 1 within {UP_TIMEOUT:.0f}s "
                               f"(steering {self.steering})")
        self.result["up_s"] = round(settled - listen, 2)
        progress(f"both tunnels and all four BGP sessions up {settled - listen:.1f}s after iked listened")
        self.start_streams()
        t0 = time.time()
        while not self.flowing() and time.time() - t0 < 20:  # the streams' pythons may start slowly
            time.sleep(1)
        if not self.flowing():
            raise RuntimeError("the UDP streams do not flow both ways through pair 1")

    def figures(self, faults: dict[str, dict[str, Any]]) -> None:
        for p in self.pings:  # ping writes its file in full when it exits
            stop_proc(p, signal.SIGINT)
        arrivals = {d: self.arrivals(d) for d in self.receivers()}
        worst: list[float] = []
        claims = self.aws.summary()["ec2_claims"] if self.aws is not None else []
        for label, f in faults.items():
            if self.aws is not None:
                # every route claim EC2 accepted from the fault to settled: [s after the fault,
                # caller, action, previous owner, new owner]
                f["ec2_claims"] = [[round(c[0] - f["t_fault"], 2), c[1], c[2], c[4], c[5]] for c in claims
                                   if f["t_fault"] <= c[0] <= f["t_settled"]]
                # where the AWS direction's time went (the scripts' own log lines, s after the fault)
                f["a1_unhealthy_s"] = self.first_log_after("a1", "unhealthy:", f["t_fault"], f["t_heal"])
                f["a2_decided_s"] = self.first_log_after("a2", "times in a row", f["t_fault"], f["t_heal"])
                taken = [c[0] for c in f["ec2_claims"] if c[1] == "a2"]
                f["a2_claimed_s"] = taken[0] if taken else None
                # did A2 read its credentials from IMDS again (and derive a new signing key)
                # between its decision and its claim?
                f["a2_credential_reads"] = sum(
                    1 for t, who in list(self.aws.credential_reads)
                    if who == "a2" and f["t_fault"] <= t <= f["t_fault"] + (f["a2_claimed_s"] or 0))
            for d, times in arrivals.items():
                gap = max_gap(times, f["t_fault"], f["t_heal"])
                back = max_gap(times, f["t_heal"], f["t_settled"])
                f[f"gap_{d}_s"], f[f"failback_{d}_s"] = gap, back
                if gap is None:
                    self.fail(f"{label}: no {d} traffic after the fault")
                else:
                    worst.append(gap)
            for src in "ab":
                f[f"ping_gap_from_{src}_s"] = max_gap(self.ping_replies(src), f["t_fault"], f["t_heal"])
            for key in ("t_fault", "t_heal", "t_settled"):
                f.pop(key)
        self.result["faults"] = faults
        self.result["failover_max_s"] = max(worst) if worst else None
        self.result["stream_received"] = {d: len(t) for d, t in arrivals.items()}

    def finish_route_tables(self) -> None:
        for name, p in self.steerers.items():
            if p.poll() is not None:
                self.fail(f"the steering script on {name} exited ({p.returncode}); see steer-{name}.out")
            stop_proc(p)
        if self.aws is None:
            return
        summary = self.aws.summary()
        self.aws.shutdown()
        self.result.update(summary)
        self.result["steer_log"] = {n: self.steer_log(n)[-60:]
                                    for n in self.steerers}
        if summary["ec2_rejected"]:
            self.fail(f"the fake EC2 rejected {summary['ec2_rejected']} calls: {summary['ec2_rejected_why']}")

    def finish(self) -> None:
        self.stop.set()
        self.result["aws_steering"] = self.plan.aws_steering
        if self.route_tables:
            self.finish_route_tables()
        else:
            rib = self.route_server_rib()
            self.result["route_server_prefixes"] = sorted({prefix for _, prefix, _ in rib})
            if any(not prefix.startswith("10.20.") for prefix in self.result["route_server_prefixes"]):
                self.fail(f"the route server learned AWS prefixes: {self.result['route_server_prefixes']}")
        self.result["child_sas"] = {n: child_sas(s.gw) for n, s in self.sides.items()}
        for p in [*self.pings, *self.procs]:
            stop_proc(p, signal.SIGINT)
        for p in self.bgpd.values():
            stop_proc(p)
        for side in self.sides.values():
            stop_iked(side)
        counts = self.counters()
        inet = ipt_counts("inet")
        clear_pcap = sum(pcap_cleartext(self.logdir / f"inet-cleartext-{n}.pcap")[0] for n in "ab")
        self.result["cleartext_iptables"] = counts["cleartext"]
        self.result["cleartext_tcpdump"] = clear_pcap
        self.result["cleartext"] = max(counts["cleartext"], clear_pcap)
        self.result["igw_private_drops"] = counts["igwdrop"]
        self.result["guard_drops"] = counts["guard"]
        self.result["icmp_errors"] = inet.get("icmperr", 0)
        self.result["esp_packets"] = inet.get("esp", 0)
        self.result["ike_packets"] = inet.get("ike", 0)
        self.result["steering_events"] = [[round(t, 2), c, v] for t, c, v in self.events]
        if self.result["cleartext"]:
            self.fail(f"{self.result['cleartext']} cleartext packets left a gateway or crossed the internet")

    def run(self) -> dict[str, Any]:
        t0 = time.monotonic()
        try:
            self.setup()
            self.up()
            faults = {label: self.fault(label, name, kind) for label, name, kind in FAULTS}
            self.figures(faults)
        except Exception as e:
            log(traceback.format_exc())
            self.fail(f"guest error: {e}")
        finally:
            try:
                self.finish()
            except Exception as e:
                log(traceback.format_exc())
                self.fail(f"guest error while finishing: {e}")
        missing_sas = [n for n, c in self.result.get("child_sas", {}).items() if not c]
        if missing_sas:
            self.fail(f"no child SA at the end on {missing_sas}")
        self.result["failures"] = self.failures
        self.result["ok"] = not self.failures
        self.result["guest_s"] = round(time.monotonic() - t0, 1)
        return self.result


def main(argv: Sequence[str]) -> int:
    def rehearse(plan: str, logdir: Path) -> dict[str, Any]:
        return HaRehearsal(HaPlan.from_json(plan), logdir).run()

    return guest.run_guest("cross_cloud_vpn.lab.ha_guest", argv, rehearse)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

