"""AWS route-table steering (openbsd/steer.py), run for real.

The rendered script runs under Debian's ``sh`` (dash) with the real OpenSSL 3, awk (mawk), sed
and sort; curl stands in for OpenBSD's ftp(1) as the fetch command (``CCVPN_STEER_FETCH``).
Against it: a fake EC2 Query API that checks every presigned URL with botocore's own SigV4
signer and rejects any other, keeps the routes and answers DescribeRouteTables in EC2's XML
shape (API_DescribeRouteTables); a fake IMDS per gateway; each gateway's probe responder faked
(200, 404 or not listening); health toggled by a file (``CCVPN_STEER_HEALTH``). Every external
command the script runs goes through a wrapper that records its arguments, so a test can show
that the secret key is never on a command line. Waits are on conditions (with generous limits),
never on elapsed time. OpenBSD's ksh, awk, LibreSSL and ftp(1) are not here: unproven.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from cross_cloud_vpn.lab.ha_aws import describe_route_tables_xml as lab_describe_route_tables_xml
from cross_cloud_vpn.openbsd import (
    GatewayHa,
    GatewaySpec,
    PfGateway,
    PubkeyAuth,
    RouteServers,
    RouteTableSteering,
    bgp_established_command,
    parse_bootstrap,
    render_gateway,
    render_pf_conf,
    render_steer_rc,
    render_steer_script,
)
from cross_cloud_vpn.openbsd.steer import STEER_RC_MODE, STEER_SCRIPT_MODE, STEER_SCRIPT_PATH

REGION = "eu-west-1"
ACCESS_KEY = "ASIAQEXAMPLE7STEER01"
# A secret and a session token holding + / = (they must be URL-encoded).
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCWV1LXdlc3QtMSJHMEUCIQD+ab/cd=="
TABLES = ("rtb-0aaaaaaaaaaaaaaa1", "rtb-0bbbbbbbbbbbbbbb2")
CIDRS = ("10.20.1.0/24", "10.20.2.0/24")
OTHER_ENI = "eni-0c0ffee0c0ffee000"
TOOLS = ("openssl", "awk", "sed", "sort", "curl", "mktemp", "grep", "date")
FIXED_DATE = "20261125T120000Z"


# --- the fakes ---------------------------------------------------------------------------------

@dataclass
class Identity:
    """What IMDS tells one gateway."""

    mac: str
    eni: str
    role: str = "ccvpn-gateway"
    secret: str = SECRET  # what IMDS hands out (a wrong one makes every signature bad)
    compact: bool = False  # the credentials document on one line, Token first


@dataclass
class Call:
    action: str
    accepted: bool
    why: str = ""


@dataclass
class FakeAws:
    """EC2 (query API, presigned GETs verified with botocore) and one IMDS per gateway prefix."""

    identities: dict[str, Identity]
    routes: dict[tuple[str, str], str]
    fixed_now: datetime.datetime | None = None
    calls: list[Call] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    #: every request, in order: ("ec2", action, accepted) or ("imds", gateway prefix, path)
    events: list[tuple[str, str, object]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def verify(self, host: str, query: str) -> str | None:
        """None when botocore, given the same parameters, signs them to the same URL."""
        pairs = parse_qsl(query, keep_blank_values=True)
        params = dict(pairs)
        if len(params) != len(pairs):
            return "a parameter repeated"
        try:
            access_key, _day, region, service, term = params["X-Amz-Credential"].split("/")
            when = datetime.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
            expires = int(params["X-Amz-Expires"])
        except (KeyError, ValueError):
            return "no usable X-Amz-Credential/Date/Expires"
        if access_key != ACCESS_KEY or (region, service, term) != (REGION, "ec2", "aws4_request"):
            return "unknown access key or wrong scope"
        now = self.fixed_now or datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        if not when - datetime.timedelta(minutes=5) <= now <= when + datetime.timedelta(seconds=expires):
            return "expired"
        operation = {k: v for k, v in pairs if not k.startswith("X-Amz-")}
        request = AWSRequest(method="GET", url=f"http://{host}/", params=operation)
        auth = SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET, TOKEN), "ec2", REGION, expires=expires)
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            auth.add_auth(request)
        if dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=True)) != params:
            return "SignatureDoesNotMatch"
        return None

    def ec2(self, host: str, query: str) -> tuple[int, str]:
        with self.lock:
            self.targets.append("/?" + query)
            params = dict(parse_qsl(query, keep_blank_values=True))
            action = params.get("Action", "")
            problem = self.verify(host, query)
            self.events.append(("ec2", action, problem is None))
            if problem:
                self.calls.append(Call(action, False, problem))
                return 401, _error("AuthFailure", problem)
            self.calls.append(Call(action, True))
            if action == "DescribeRouteTables":
                tables = [v for k, v in sorted(params.items()) if k.startswith("RouteTableId.")]
                return 200, describe_route_tables_xml(tables, self.routes)
            key = (params.get("RouteTableId", ""), params.get("DestinationCidrBlock", ""))
            if action == "ReplaceRoute" and key not in self.routes:
                return 400, _error("InvalidRoute.NotFound", "no such route")
            if action == "CreateRoute" and key in self.routes:
                return 400, _error("RouteAlreadyExists", "the route exists")
            if action in ("ReplaceRoute", "CreateRoute"):
                self.routes[key] = params["NetworkInterfaceId"]
                return 200, (f'<{action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">\n'
                             f"    <requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>\n"
                             f"    <return>true</return>\n</{action}Response>\n")
            return 400, _error("InvalidAction", action)

    def imds(self, prefix: str, path: str) -> tuple[int, str]:
        with self.lock:
            self.events.append(("imds", prefix, path))
        who = self.identities.get(prefix)
        if who is None:
            return 404, ""
        creds = f"iam/security-credentials/{who.role}"
        answers = {
            "mac": who.mac,
            f"network/interfaces/macs/{who.mac}/interface-id": who.eni,
            "iam/security-credentials/": who.role,
            creds: ('{\n  "Code" : "Success",\n  "LastUpdated" : "2026-11-25T12:00:00Z",\n'
                    '  "Type" : "AWS-HMAC",\n'
                    f'  "AccessKeyId" : "{ACCESS_KEY}",\n  "SecretAccessKey" : "{who.secret}",\n'
                    f'  "Token" : "{TOKEN}",\n  "Expiration" : "2026-11-25T18:00:00Z"\n}}'),
        }
        if who.compact:
            answers[creds] = (f'{{"Token":"{TOKEN}","Code":"Success","Expiration":"2026-11-25T18:00:00Z",'
                              f'"SecretAccessKey":"{who.secret}","AccessKeyId":"{ACCESS_KEY}"}}')
        body = answers.get(path.removeprefix("/latest/meta-data/"))
        return (404, "") if body is None else (200, body)

    def owner(self, table: str, cidr: str) -> str | None:
        with self.lock:
            return self.routes.get((table, cidr))

    def all_owned_by(self, eni: str) -> bool:
        return all(self.owner(t, c) == eni for t in TABLES for c in CIDRS)

    def count(self, action: str, accepted: bool = True) -> int:
        with self.lock:
            return sum(1 for c in self.calls if c.action == action and c.accepted == accepted)


def _error(code: str, message: str) -> str:
    return (f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            "<RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>")


def describe_route_tables_xml(tables: list[str], routes: dict[tuple[str, str], str]) -> str:
    """EC2's DescribeRouteTables answer, as the HA lab's fake EC2 gives it (one builder for both)."""
    return lab_describe_route_tables_xml(tables, routes, "10.10.0.0/16")


def _serve(address: str, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((address, 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def aws_server(fake: FakeAws) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            segments = parts.path.split("/", 2)
            if parts.path == "/" and parts.query:
                code, body = fake.ec2(self.headers.get("Host", ""), parts.query)
            elif len(segments) == 3 and segments[2].startswith("latest/meta-data/"):
                code, body = fake.imds(segments[1], "/" + segments[2])
            else:
                code, body = 404, ""
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return _serve("127.0.0.1", Handler)


class Probe:
    """One gateway's probe responder: GET /up is 200 while healthy, 404 while not; stop() makes
    it refuse connections, as a dead instance would."""

    def __init__(self, address: str) -> None:
        self.healthy = True
        self.hangs = False  # accepts the connection, never answers (a wedged httpd)
        self.hits = 0
        probe = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                probe.hits += 1
                while probe.hangs:
                    time.sleep(0.1)
                code = 200 if probe.healthy and self.path == "/up" else 404
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = _serve(address, Handler)
        self.address, self.port = self.server.server_address[0], self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- running the script ------------------------------------------------------------------------

def wrappers(folder: Path, argv_log: Path, awk: str = "awk") -> Path:
    """PATH stand-ins: logger appends to $CCVPN_TEST_LOG; every other tool records its argv and
    runs the real one (``awk`` may be another implementation); date answers FIXED_DATE when
    CCVPN_TEST_FIXED_DATE is set, or the content of $CCVPN_TEST_DATE_FILE when that is set. With
    CCVPN_TEST_EXEC_DELAY set, each tool first sleeps that long (the bench's stand-in for the
    user-mode-Linux lab, where an exec costs about 0.1 s)."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "logger").write_text('#!/bin/sh\nshift 2\necho "$*" >> "$CCVPN_TEST_LOG"\n')
    for tool in TOOLS:
        real = shutil.which(awk if tool == "awk" else tool, path="/usr/bin:/bin")
        assert real, f"{tool} is needed"
        fixed = (f'[ -n "$CCVPN_TEST_FIXED_DATE" ] && [ "$*" = "-u +%Y%m%dT%H%M%SZ" ] && '
                 f'{{ echo {FIXED_DATE}; exit 0; }}\n'
                 '[ -n "$CCVPN_TEST_DATE_FILE" ] && [ "$*" = "-u +%Y%m%dT%H%M%SZ" ] && '
                 '{ cat "$CCVPN_TEST_DATE_FILE"; exit 0; }\n') if tool == "date" else ""
        delay = '[ -z "$CCVPN_TEST_EXEC_DELAY" ] || /bin/sleep "$CCVPN_TEST_EXEC_DELAY"\n'
        (bin_dir / tool).write_text(
            f'#!/bin/sh\necho "{tool} $*" >> "{argv_log}"\n{delay}{fixed}exec {real} "$@"\n')
    for tool in ("logger", *TOOLS):
        (bin_dir / tool).chmod(0o755)
    return bin_dir


@dataclass
class Gateway:
    name: str
    process: subprocess.Popen[bytes]
    health: Path
    log: Path
    checks: Path

    def lines(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def set_healthy(self, healthy: bool) -> None:
        if healthy:
            self.health.touch()
        else:
            self.health.unlink(missing_ok=True)

    def health_checks(self) -> int:
        return len(self.checks.read_text().splitlines()) if self.checks.exists() else 0


class Lab:
    """A fake AWS, and the real steering script for each gateway started in it."""

    def __init__(self, tmp: Path, identities: dict[str, Identity], routes: dict[tuple[str, str], str],
                 shell: str = "sh", awk: str = "awk", env: dict[str, str] | None = None):
        self.tmp = tmp
        self.env = dict(env or {})  # more environment for every gateway (CCVPN_TEST_*)
        self.shell = shell
        self.fake = FakeAws(identities=identities, routes=dict(routes))
        self.server = aws_server(self.fake)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.argv_log = tmp / "argv.log"
        self.bin = wrappers(tmp, self.argv_log, awk)
        self.gateways: list[Gateway] = []

    def start(self, name: str, steering: RouteTableSteering, healthy: bool = True,
              edit: Callable[[str], str] | None = None) -> Gateway:
        """``edit``: a change to the rendered text (a test's shorter credential refresh)."""
        script = self.tmp / f"{name}.sh"
        text = render_steer_script(steering, "10.20.0.10")
        script.write_text(edit(text) if edit else text)
        health, log, checks = (self.tmp / f"{name}.{x}" for x in ("healthy", "log", "checks"))
        if healthy:
            health.touch()
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "CCVPN_STEER_FETCH": "curl -fsS",
            "CCVPN_STEER_IMDS": f"{self.endpoint}/{name}",
            "CCVPN_STEER_EC2": self.endpoint,
            "CCVPN_STEER_HEALTH": f"echo check >> {checks}; test -e {health}",
            "CCVPN_TEST_LOG": str(log),
            **self.env,
        }
        process = subprocess.Popen([self.shell, str(script)], env=env, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        gateway = Gateway(name, process, health, log, checks)
        self.gateways.append(gateway)
        return gateway

    def stop(self) -> None:
        for gateway in self.gateways:
            if gateway.process.poll() is None:
                os.killpg(gateway.process.pid, signal.SIGTERM)
                gateway.process.wait(timeout=10)
        self.server.shutdown()
        self.server.server_close()

    def logs(self) -> str:
        return "\n".join(f"--- {g.name}\n{g.lines()}" for g in self.gateways)


def wait_for(condition: Callable[[], bool], lab: Lab, what: str, limit: float = 60.0) -> None:
    """Poll until ``condition`` holds; the limit only bounds a broken run (no figure is asserted)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}\n{lab.logs()}\ncalls: {lab.fake.calls[-10:]}")
        time.sleep(0.05)


A1 = Identity(mac="0a:00:00:00:00:a1", eni="eni-0a1a1a1a1a1a1a1a1")
A2 = Identity(mac="0a:00:00:00:00:a2", eni="eni-0a2a2a2a2a2a2a2a2")
#: Before anything runs: one route to an old interface per table, one missing (CreateRoute).
START_ROUTES = {(TABLES[0], CIDRS[0]): OTHER_ENI, (TABLES[1], CIDRS[0]): OTHER_ENI,
                (TABLES[1], CIDRS[1]): OTHER_ENI}


def steering(partner: Probe | None, standby: bool, interval: float = 0.2) -> RouteTableSteering:
    return RouteTableSteering(
        region=REGION, route_table_ids=TABLES, destination_cidrs=CIDRS, standby=standby,
        partner_private_ip=partner.address if partner else "127.0.0.99",
        probe_port=partner.port if partner else 8080, interval=interval, misses=2)


#: OpenBSD's /bin/sh is its ksh, a pdksh; its awk is the one true (BWK) awk. Debian packages a
#: pdksh descendant (mksh) and BWK awk (original-awk): where installed, the scenario of every
#: role change runs on them too (closer to OpenBSD, still not OpenBSD's own builds).
DASH, PDKSH = ("sh", "awk"), ("mksh", "original-awk")
needs_pdksh = pytest.mark.skipif(not (shutil.which("mksh") and shutil.which("original-awk")),
                                 reason="apt-get install mksh original-awk")
PORTABLE = [pytest.param(DASH, id="dash-mawk"), pytest.param(PDKSH, id="mksh-bwk-awk", marks=needs_pdksh)]


@pytest.fixture()
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    shell, awk = getattr(request, "param", ("sh", "awk"))
    fake_lab = Lab(tmp_path, {"a1": A1, "a2": A2}, START_ROUTES, shell=shell, awk=awk)
    yield fake_lab
    fake_lab.stop()


# --- (a) the signature is botocore's ---------------------------------------------------------

RECORDER = """#!/bin/sh
# A fetch command that answers from files: IMDS and EC2 never reached, every EC2 URL recorded.
url=$1
case $url in
http://imds.invalid/*) f=$CCVPN_TEST_CANNED/imds/${url#http://imds.invalid/latest/meta-data/}
  [ -f "$f" ] || f=$f/index
  cat "$f" ;;
https://ec2.eu-west-1.amazonaws.com/*) echo "$url" >> "$CCVPN_TEST_URLS"
  case $url in *Action=DescribeRouteTables*) cat "$CCVPN_TEST_CANNED/describe.xml" ;;
  *) echo '<ReplaceRouteResponse><return>true</return></ReplaceRouteResponse>' ;; esac ;;
*) exit 1 ;;
esac
"""


def botocore_url(params: list[tuple[str, str]], endpoint: str, when: str) -> str:
    request = AWSRequest(method="GET", url=f"{endpoint}/", params=dict(params))
    auth = SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET, TOKEN), "ec2", REGION, expires=60)
    moment = datetime.datetime.strptime(when, "%Y%m%dT%H%M%SZ")
    with mock.patch("botocore.auth.get_current_datetime", return_value=moment):
        auth.add_auth(request)
    return str(request.url)


def test_presigned_urls_equal_botocores_for_fixed_credentials_time_and_region(tmp_path: Path) -> None:
    """The real AWS defaults (https://ec2.eu-west-1.amazonaws.com), IMDS and EC2 answered from
    files by a stand-in fetch command, the clock fixed: each URL the script would hand to ftp(1)
    is, byte for byte, the one botocore presigns for the same call."""
    canned = tmp_path / "canned"
    imds = canned / "imds"
    (imds / "network/interfaces/macs" / A1.mac).mkdir(parents=True)
    (imds / "iam/security-credentials").mkdir(parents=True)
    (imds / "mac").write_text(A1.mac + "\n")
    (imds / "network/interfaces/macs" / A1.mac / "interface-id").write_text(A1.eni)
    (imds / "iam/security-credentials/index").write_text("ccvpn-gateway\n")
    json = FakeAws({"a1": A1}, {}).imds("a1", "/latest/meta-data/iam/security-credentials/ccvpn-gateway")[1]
    (imds / "iam/security-credentials/ccvpn-gateway").write_text(json)
    (canned / "describe.xml").write_text(describe_route_tables_xml(list(TABLES), dict(START_ROUTES)))
    recorder = tmp_path / "fetch"
    recorder.write_text(RECORDER)
    recorder.chmod(0o755)
    urls = tmp_path / "urls"
    bin_dir = wrappers(tmp_path, tmp_path / "argv.log")
    script = tmp_path / "steer.sh"
    script.write_text(render_steer_script(steering(None, standby=False, interval=5), "10.20.0.10"))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CCVPN_STEER_FETCH": str(recorder),
           "CCVPN_STEER_IMDS": "http://imds.invalid", "CCVPN_STEER_HEALTH": "true",
           "CCVPN_TEST_CANNED": str(canned), "CCVPN_TEST_URLS": str(urls), "CCVPN_TEST_FIXED_DATE": "1",
           "CCVPN_TEST_LOG": str(tmp_path / "log")}
    process = subprocess.Popen(["sh", str(script)], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(urls.read_text().splitlines() if urls.exists() else []) < 4:
            assert time.monotonic() < deadline and process.poll() is None, (tmp_path / "log").read_text()
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    got = urls.read_text().splitlines()
    endpoint = "https://ec2.eu-west-1.amazonaws.com"
    describe = [("Action", "DescribeRouteTables"), ("RouteTableId.1", TABLES[0]),
                ("RouteTableId.2", TABLES[1]), ("Version", "2016-11-15")]
    assert got[0] == botocore_url(describe, endpoint, FIXED_DATE)

    def claim(action: str, table: str, cidr: str) -> str:
        return botocore_url([("Action", action), ("DestinationCidrBlock", cidr),
                             ("NetworkInterfaceId", A1.eni), ("RouteTableId", table),
                             ("Version", "2016-11-15")], endpoint, FIXED_DATE)

    # Per table, per network: 10.20.2.0/24 is missing from the first table (CreateRoute).
    assert got[1:4] == [claim("ReplaceRoute", TABLES[0], CIDRS[0]), claim("CreateRoute", TABLES[0], CIDRS[1]),
                        claim("ReplaceRoute", TABLES[1], CIDRS[0])]
    assert "%2F" in got[0] and "X-Amz-Security-Token=IQoJb3JpZ2luX2VjEJr%2F%2F" in got[0]
    assert all(SECRET not in url for url in got)


# --- (b) the real script against the fake cloud ------------------------------------------------

def test_healthy_primary_claims_every_route_replacing_or_creating_it(lab: Lab) -> None:
    lab.start("a1", steering(None, standby=False))
    wait_for(lambda: lab.fake.all_owned_by(A1.eni), lab, "the primary owns every route")
    assert lab.fake.count("ReplaceRoute") == 3 and lab.fake.count("CreateRoute") == 1
    assert not [c for c in lab.fake.calls if not c.accepted], "every signature was accepted"
    assert f"ReplaceRoute 10.20.1.0/24 in {TABLES[0]} to {A1.eni} (was {OTHER_ENI}): primary, healthy" \
        in lab.gateways[0].lines()


def test_unhealthy_gateway_never_claims(lab: Lab) -> None:
    a1 = lab.start("a1", steering(None, standby=False), healthy=False)
    wait_for(lambda: a1.health_checks() >= 15, lab, "15 rounds")
    assert lab.fake.routes == START_ROUTES
    assert lab.fake.count("ReplaceRoute") == lab.fake.count("CreateRoute") == 0
    assert "unhealthy: the BGP session through the tunnel is not Established; claiming nothing" in a1.lines()


def test_standby_does_not_take_over_while_the_partner_answers(lab: Lab) -> None:
    partner = Probe("127.0.0.11")
    try:
        lab.fake.routes = {(t, c): A1.eni for t in TABLES for c in CIDRS}
        lab.start("a2", steering(partner, standby=True))
        wait_for(lambda: partner.hits >= 15, lab, "15 probes of the partner")
        assert lab.fake.all_owned_by(A1.eni)
        assert lab.fake.count("ReplaceRoute") == lab.fake.count("DescribeRouteTables") == 0
    finally:
        partner.stop()


@pytest.mark.parametrize(
    ("lab", "failure"),
    [pytest.param(DASH, "answers 404", id="dash-404"),
     pytest.param(DASH, "refuses the connection", id="dash-refused"),
     pytest.param(DASH, "hangs", id="dash-hangs"),
     pytest.param(PDKSH, "hangs", id="mksh-hangs", marks=needs_pdksh)],
    indirect=["lab"],
)
def test_standby_takes_over_only_after_the_partners_probe_failed_misses_times(lab: Lab, failure: str) -> None:
    """A probe that hangs is cut off after its time limit (1 s) and counts as a miss."""
    partner = Probe("127.0.0.11")
    lab.fake.routes = {(t, c): A1.eni for t in TABLES for c in CIDRS}
    a2 = lab.start("a2", steering(partner, standby=True))
    wait_for(lambda: partner.hits >= 3, lab, "the standby probes its partner")
    if failure == "answers 404":
        partner.healthy = False
    elif failure == "hangs":
        partner.hangs = True
    else:
        partner.stop()
    try:
        wait_for(lambda: lab.fake.all_owned_by(A2.eni), lab, "the standby owns every route")
        assert "the partner's probe failed 2 times in a row: taking over when healthy" in a2.lines()
        log = a2.lines()
        assert log.index("failed 2 times in a row") < log.index("ReplaceRoute")
        assert "standby, healthy, the partner's probe failed" in log
    finally:
        partner.hangs = False
        if failure != "refuses the connection":
            partner.stop()


def test_unhealthy_standby_does_not_take_over_even_when_the_partner_is_down(lab: Lab) -> None:
    partner = Probe("127.0.0.11")
    partner.healthy = False
    try:
        lab.fake.routes = {(t, c): A1.eni for t in TABLES for c in CIDRS}
        a2 = lab.start("a2", steering(partner, standby=True), healthy=False)
        wait_for(lambda: partner.hits >= 10 and a2.health_checks() >= 10, lab, "10 rounds")
        assert lab.fake.all_owned_by(A1.eni) and lab.fake.count("ReplaceRoute") == 0
    finally:
        partner.stop()


@pytest.mark.parametrize("lab", PORTABLE, indirect=True)
def test_primary_takes_the_routes_back_once_healthy_and_the_standby_lets_it(lab: Lab) -> None:
    a1_probe, a2_probe = Probe("127.0.0.11"), Probe("127.0.0.12")
    try:
        a1 = lab.start("a1", steering(a2_probe, standby=False))
        wait_for(lambda: lab.fake.all_owned_by(A1.eni), lab, "the primary owns every route")
        a2 = lab.start("a2", steering(a1_probe, standby=True))
        # Pair 1's tunnel fails: A1 stops claiming and its responder says 404.
        a1.set_healthy(False)
        a1_probe.healthy = False
        wait_for(lambda: lab.fake.all_owned_by(A2.eni), lab, "the standby took over")
        # Pair 1 recovers: the primary preempts, the standby sees its partner answer again.
        a1.set_healthy(True)
        a1_probe.healthy = True
        wait_for(lambda: lab.fake.all_owned_by(A1.eni), lab, "the primary took the routes back")
        wait_for(lambda: "the partner answers its probe again" in a2.lines(), lab, "the standby noticed")
        replaced = lab.fake.count("ReplaceRoute")
        checks = a2.health_checks()
        wait_for(lambda: a2.health_checks() >= checks + 15, lab, "15 more rounds of the standby")
        assert lab.fake.all_owned_by(A1.eni) and lab.fake.count("ReplaceRoute") == replaced, "no flapping"
    finally:
        a1_probe.stop()
        a2_probe.stop()


def test_a_bad_signature_changes_nothing_is_logged_and_no_log_line_holds_a_secret(lab: Lab) -> None:
    wrong = "Wrong/Secret+Key0000000000000000000000000"
    lab.fake.identities["a1"] = Identity(mac=A1.mac, eni=A1.eni, secret=wrong)
    a1 = lab.start("a1", steering(None, standby=False))
    wait_for(lambda: lab.fake.count("DescribeRouteTables", accepted=False) >= 3, lab, "3 rejected calls")
    assert lab.fake.routes == START_ROUTES
    assert {c.why for c in lab.fake.calls} == {"SignatureDoesNotMatch"}
    assert "DescribeRouteTables failed: curl: (22)" in a1.lines() and "401" in a1.lines()
    assert "Wrong/Secret" not in a1.lines() and TOKEN not in a1.lines() and "X-Amz" not in a1.lines()


def test_credentials_are_read_again_from_imds_after_a_rejected_call(lab: Lab) -> None:
    old = "Old/Secret+Key00000000000000000000000000"
    lab.fake.identities["a1"] = Identity(mac=A1.mac, eni=A1.eni, secret=old)
    lab.start("a1", steering(None, standby=False))
    wait_for(lambda: lab.fake.count("DescribeRouteTables", accepted=False) >= 1, lab, "a rejected call")
    lab.fake.identities["a1"] = A1  # IMDS now hands out the credentials EC2 accepts (a rotation)
    wait_for(lambda: lab.fake.all_owned_by(A1.eni), lab, "the primary owns every route")
    # one signing key per secret: the new secret's key replaces the old one's
    assert lab.gateways[0].lines().count("signing key of ") == 2


def credential_reads(lab: Lab, prefix: str, since: int = 0) -> int:
    """Reads of the role's credentials by gateway ``prefix`` among the fake's events[since:]."""
    return sum(1 for kind, who, path in list(lab.fake.events)[since:]
               if kind == "imds" and who == prefix and str(path).endswith("credentials/ccvpn-gateway"))


def test_a_takeover_after_a_long_idle_stretch_reads_no_imds_derives_no_key_and_describes_nothing(
        lab: Lab) -> None:
    """The standby reads its credentials and derives the day's signing key in its first idle
    round; 30 idle rounds later, its takeover makes no IMDS read and no key derivation, and
    claims at once (ReplaceRoute, no DescribeRouteTables first)."""
    partner = Probe("127.0.0.11")
    try:
        lab.fake.routes = {(t, c): A1.eni for t in TABLES for c in CIDRS}
        a2 = lab.start("a2", steering(partner, standby=True))
        wait_for(lambda: partner.hits >= 30, lab, "30 idle rounds")
        assert credential_reads(lab, "a2") == 1, "read once, in the first round"
        assert a2.lines().count("signing key of ") == 1
        assert lab.fake.count("DescribeRouteTables") == 0, "an idle standby makes no EC2 call"
        before = len(lab.fake.events)
        partner.healthy = False
        wait_for(lambda: lab.fake.all_owned_by(A2.eni), lab, "the standby owns every route")
        events = list(lab.fake.events)[before:]
        ec2 = [e for e in events if e[0] == "ec2"]
        assert [e[1] for e in ec2[:4]] == ["ReplaceRoute"] * 4 and all(e[2] for e in ec2[:4])
        first_claim = events.index(ec2[0])
        assert not [e for e in events[:first_claim] if e[0] == "imds"], "no IMDS read before the claim"
        log = a2.lines()
        assert log.count("signing key of ") == 1, "no key derivation at claim time"
        assert "(not described first, last seen unknown): standby, healthy, the partner's probe" in log
    finally:
        partner.stop()


def test_idle_rounds_read_the_credentials_again_and_keep_the_signing_key_while_the_secret_holds(
        lab: Lab) -> None:
    """With the refresh period cut to 3 rounds: an idle standby reads its credentials every few
    rounds, the role's name only once, and derives the signing key only once (same secret, same
    day); then a takeover still reads nothing first."""
    partner = Probe("127.0.0.11")
    try:
        lab.fake.routes = {(t, c): A1.eni for t in TABLES for c in CIDRS}
        a2 = lab.start("a2", steering(partner, standby=True),
                       edit=lambda text: re.sub(r"(?m)^refresh_loops=\d+$", "refresh_loops=3", text))
        wait_for(lambda: credential_reads(lab, "a2") >= 5, lab, "five credential reads")
        role_reads = [e for e in lab.fake.events if e[0] == "imds" and str(e[2]).endswith("credentials/")]
        assert len(role_reads) == 1, "the role's name is asked once"
        assert a2.lines().count("signing key of ") == 1
        partner.stop()
        wait_for(lambda: lab.fake.all_owned_by(A2.eni), lab, "the standby owns every route")
        assert a2.lines().count("signing key of ") == 1
        assert not [c for c in lab.fake.calls if not c.accepted]
    finally:
        partner.hangs = False


def test_the_signing_key_is_derived_once_per_utc_day_in_an_idle_round(tmp_path: Path) -> None:
    """date(1) answers from a file; EC2 checks against the same moment. Near midnight the idle
    standby asks the time every round and derives the new day's key before any claim; once past
    midnight, idle rounds run no date(1) at all."""
    clock = tmp_path / "now"
    clock.write_text("20261125T235930Z\n")
    lab = Lab(tmp_path, {"a1": A1, "a2": A2}, {(t, c): A1.eni for t in TABLES for c in CIDRS},
              env={"CCVPN_TEST_DATE_FILE": str(clock)})
    lab.fake.fixed_now = datetime.datetime(2026, 11, 25, 23, 59, 30)
    partner = Probe("127.0.0.11")
    try:
        a2 = lab.start("a2", steering(partner, standby=True))
        wait_for(lambda: "signing key of 20261125 derived" in a2.lines() and partner.hits >= 5, lab,
                 "the day's key, then idle rounds")
        clock.write_text("20261126T000010Z\n")
        lab.fake.fixed_now = datetime.datetime(2026, 11, 26, 0, 0, 10)
        wait_for(lambda: "signing key of 20261126 derived" in a2.lines(), lab, "the next day's key (idle)")

        def dates() -> int:
            return lab.argv_log.read_text().count("date -u")

        seen, hits = dates(), partner.hits
        wait_for(lambda: partner.hits >= hits + 10, lab, "10 more idle rounds")
        assert dates() == seen, "past midnight, idle rounds ask no time"
        partner.healthy = False
        wait_for(lambda: lab.fake.all_owned_by(A2.eni), lab, "the standby owns every route")
        log = a2.lines()
        assert log.count("signing key of ") == 2
        assert log.index("signing key of 20261126") < log.index("failed 2 times in a row")
        assert not [c for c in lab.fake.calls if not c.accepted]
    finally:
        partner.stop()
        lab.stop()


def test_credentials_document_on_one_line_in_another_order_is_read_alike(lab: Lab) -> None:
    lab.fake.identities["a1"] = Identity(mac=A1.mac, eni=A1.eni, compact=True)
    lab.start("a1", steering(None, standby=False))
    wait_for(lambda: lab.fake.all_owned_by(A1.eni), lab, "the primary owns every route")
    assert not [c for c in lab.fake.calls if not c.accepted]


def test_secret_key_is_never_in_a_log_line_nor_on_any_command_line(lab: Lab) -> None:
    lab.start("a1", steering(None, standby=False))
    wait_for(lambda: lab.fake.all_owned_by(A1.eni), lab, "the primary owns every route")
    argv = lab.argv_log.read_text()
    assert "openssl dgst -sha256" in argv and "openssl base64 -d" in argv  # the wrappers did record
    for secret in (SECRET, SECRET.encode().hex(), ("AWS4" + SECRET).encode().hex()):
        assert secret not in argv
        assert secret not in lab.gateways[0].lines()
    assert "-hmac" not in argv and "hexkey" not in argv


# --- (c) what the gateway installs ------------------------------------------------------------

PEM = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"


def aws_spec(**ha_changes: object) -> GatewaySpec:
    rt = RouteTableSteering(region=REGION, route_table_ids=TABLES, partner_private_ip="10.10.0.11")
    ha = GatewayHa(**{"local_as": 65010, "peer_as": 65020, "peer_private_ip": "10.20.0.10",
                      "probe_port": 8080, "route_tables": rt, **ha_changes})  # type: ignore[arg-type]
    return GatewaySpec(site="aws", peer_site="azure", private_ip="10.10.0.10", public_ip="198.51.100.10",
                       peer_public_ip="203.0.113.20", local_cidrs=["10.10.1.0/24"],
                       remote_cidrs=list(CIDRS), admin_cidrs=["192.0.2.0/24"], auth=PubkeyAuth(),
                       peer_public_key=PEM, ha=ha)


def test_rc_script_runs_the_steering_loop_in_the_background_through_rc_subr() -> None:
    rc = render_steer_rc()
    lines = [line for line in rc.splitlines() if line and not line.startswith("#")]
    assert rc.startswith("#!/bin/ksh\n")
    assert lines == [f'daemon="{STEER_SCRIPT_PATH}"', ". /etc/rc.d/rc.subr",
                     'pexp="/bin/sh ${daemon}${daemon_flags:+ ${daemon_flags}}"', "rc_bg=YES", "rc_reload=NO",
                     "rc_cmd $1"]
    subprocess.run(["sh", "-n"], input=rc, text=True, check=True)


def test_aws_route_table_gateway_installs_responder_steering_script_and_rc_script() -> None:
    rendered = render_gateway(aws_spec())
    plan = [(f.path, f.mode, f.check, f.restarts) for f in rendered.files[4:]]
    assert plan == [
        ("/etc/bgpd.conf", 0o600, "bgpd -n -f {path}", "bgpd"),
        ("/etc/ifstated.conf", 0o600, "ifstated -n -f {path}", "ifstated"),
        ("/etc/httpd.conf", 0o600, "httpd -n -f {path}", "httpd"),
        (STEER_SCRIPT_PATH, STEER_SCRIPT_MODE, "sh -n {path}", "ccvpn_steer"),
        ("/etc/rc.d/ccvpn_steer", STEER_RC_MODE, "sh -n {path}", "ccvpn_steer"),
    ]
    script = rendered.files[7].content
    assert f"cidrs='{' '.join(CIDRS)}'" in script, "the steered networks are the remote CIDRs"
    assert "partner_url='http://10.10.0.11:8080/up'" in script and "role='primary'" in script
    assert f"health_default='{bgp_established_command('10.20.0.10')}'" in script
    assert "rcctl enable ccvpn_steer" in rendered.bootstrap
    assert "route-server" not in rendered.files[4].content
    assert parse_bootstrap(rendered.bootstrap).sysctl_lines == ("net.inet.ip.forwarding=1",)
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)


def test_pf_admits_the_probe_from_the_partner_gateway_in_route_table_mode() -> None:
    pf = render_gateway(aws_spec()).pf_conf.splitlines()
    assert 'partner_gw = "10.10.0.11"' in pf
    assert "pass in on egress inet proto tcp from $partner_gw to $gw port 8080" in pf
    assert not [line for line in pf if "lb_probe" in line or "168.63.129.16" in line]


def test_pf_probe_source_defaults_to_the_azure_load_balancer() -> None:
    pf = render_pf_conf(PfGateway(private_ip="10.20.0.10", peer_public_ip="198.51.100.10",
                                  local_cidrs=["10.20.1.0/24"], remote_cidrs=["10.10.1.0/24"],
                                  admin_cidrs=["192.0.2.0/24"], bgp_peer_private_ip="10.10.0.10",
                                  probe_port=8080))
    assert 'lb_probe = "168.63.129.16"' in pf.splitlines() and "partner_gw" not in pf


def test_azure_probe_gateway_turns_tcp_timestamps_off_and_no_other_gateway_does() -> None:
    azure = GatewaySpec(site="azure", peer_site="aws", private_ip="10.20.0.10", public_ip="203.0.113.20",
                        peer_public_ip="198.51.100.10", local_cidrs=["10.20.1.0/24"],
                        remote_cidrs=["10.10.1.0/24"], admin_cidrs=["192.0.2.0/24"], auth=PubkeyAuth(),
                        peer_public_key=PEM,
                        ha=GatewayHa(local_as=65020, peer_as=65010, peer_private_ip="10.10.0.10",
                                     probe_port=8080))
    rendered = render_gateway(azure)
    assert rendered.sysctl_lines == ("net.inet.ip.forwarding=1", "net.inet.tcp.rfc1323=0")
    assert parse_bootstrap(rendered.bootstrap).sysctl_lines == rendered.sysctl_lines
    assert render_gateway(aws_spec()).sysctl_lines == ("net.inet.ip.forwarding=1",)


@pytest.mark.parametrize(
    ("ha_changes", "message"),
    [
        ({"probe_port": None}, "route-table steering needs probe_port"),
        ({"route_servers": RouteServers(["10.10.0.230"], remote_as=65000)}, "not both"),
        ({"route_tables": RouteTableSteering(region=REGION, route_table_ids=TABLES,
                                             partner_private_ip="10.10.0.11", probe_port=9090)}, "differs"),
        ({"route_tables": RouteTableSteering(region=REGION, route_table_ids=TABLES,
                                             partner_private_ip="10.10.0.10")}, "other AWS gateway"),
        ({"route_tables": RouteTableSteering(region=REGION, route_table_ids=TABLES,
                                             partner_private_ip="10.10.0.11",
                                             destination_cidrs=["10.99.0.0/16"])}, "remote_cidrs"),
    ],
)
def test_contradictory_route_table_steering_is_refused(ha_changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_gateway(aws_spec(**ha_changes))


@pytest.mark.parametrize(("interval", "text"),
                         [(2, "2"), (2.0, "2"), (0.5, "0.5"), (0.25, "0.25"), (10, "10")])
def test_interval_is_rendered_as_sleep_reads_it(interval: float, text: str) -> None:
    rt = RouteTableSteering(region=REGION, route_table_ids=TABLES, partner_private_ip="10.10.0.11",
                            destination_cidrs=CIDRS, probe_port=8080, interval=interval)
    script = render_steer_script(rt, "10.20.0.10")
    assert f"interval='{text}'\n" in script and 'sleep "$interval"' in script


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"region": "Europe"}, "region"),
        ({"route_table_ids": []}, "at least one"),
        ({"route_table_ids": ["rtb-1"]}, "rtb-0123456789abcdef0"),
        ({"route_table_ids": [TABLES[0], TABLES[0]]}, "twice"),
        ({"destination_cidrs": ["10.20.1.0/33"]}, "IPv4 network"),
        ({"partner_private_ip": "a2"}, "partner_private_ip"),
        ({"probe_port": 179}, "taken"),
        ({"interval": 0}, "interval"),
        ({"misses": 0}, "misses"),
    ],
)
def test_steering_refuses_bad_inputs(change: dict[str, object], message: str) -> None:
    good = RouteTableSteering(region=REGION, route_table_ids=TABLES, partner_private_ip="10.10.0.11",
                              destination_cidrs=CIDRS, probe_port=8080)
    with pytest.raises(ValueError, match=message):
        render_steer_script(RouteTableSteering(**{**good.__dict__, **change}), "10.20.0.10")  # type: ignore[arg-type]
