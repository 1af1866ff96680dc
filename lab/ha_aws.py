"""A fake AWS for the route-table HA rehearsal (:mod:`.ha_guest`): the EC2 Query API and IMDS.

The AWS gateways run the real steering script (``openbsd/steer.py``); what it talks to is this:

- **EC2** (plain HTTP on a VPC-internal address, ``CCVPN_STEER_EC2``): every request must be a
  presigned GET whose SigV4 query signature botocore, given the same parameters, credentials and
  time, computes identically (anything else: 401 AuthFailure, recorded); it keeps the route table
  state and answers ``DescribeRouteTables`` in EC2's XML shape (API_DescribeRouteTables),
  ``ReplaceRoute``/``CreateRoute`` as EC2 does (InvalidRoute.NotFound, RouteAlreadyExists,
  unknown interface). An accepted claim of a route calls ``on_route(cidr, eni)``: the guest then
  points the "VPC router" at that interface's private address, as the VPC does to the ENI.
- **IMDS** (169.254.169.254, the script's own default, IMDSv1 GETs): answers the instance that
  asks, known by its source address: ``mac``, ``network/interfaces/macs/<mac>/interface-id``,
  ``iam/security-credentials/`` and the role's temporary credentials (fresh random secret and
  session token per gateway and run, as EC2 hands out).

No real AWS behaviour beyond that: no propagation delay of a route change, no throttling, no
credential rotation, no IMDSv2 (the script uses v1).
"""

from __future__ import annotations

import base64
import ctypes
import datetime
import os
import secrets
import socketserver
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

from botocore.auth import SigV4QueryAuth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

API_VERSION = "2016-11-15"
ROLE = "ccvpn-gateway"
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


@dataclass(frozen=True)
class Instance:
    """One AWS gateway as IMDS and EC2 know it."""

    name: str
    private_ip: str
    mac: str
    eni: str
    access_key: str
    secret: str = field(repr=False)
    token: str = field(repr=False)


class QuietServer(ThreadingHTTPServer):
    """HTTPServer without the reverse DNS lookup of its own address (``server_bind`` calls
    socket.getfqdn): the guest has no resolver, and the query would leave for the internet."""

    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])


def make_instance(name: str, private_ip: str, mac: str, eni: str) -> Instance:
    """Fresh temporary credentials, shaped as EC2's (ASIA... key id, base64 secret and token)."""
    key = "ASIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
    secret = base64.b64encode(secrets.token_bytes(30)).decode()
    token = base64.b64encode(secrets.token_bytes(96)).decode()
    return Instance(name, private_ip, mac, eni, key, secret, token)


def in_netns(ns: str, make: Callable[[], T]) -> T:
    """``make()`` run on a thread that entered network namespace ``ns`` (setns(2) moves only the
    calling thread): a socket it creates belongs to ``ns`` for good, whoever uses it later."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {ns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            out["value"] = make()
        except BaseException as e:  # handed to the caller's thread
            out["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]  # type: ignore[no-any-return]


def _error(code: str, message: str) -> str:
    return (f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            "<RequestID>ea966190-f9aa-478e-9ede-0000000000ab</RequestID></Response>")


def describe_route_tables_xml(tables: list[str], routes: Mapping[tuple[str, str], str], vpc_cidr: str) -> str:
    """EC2's response shape (API_DescribeRouteTables, Examples), indented as EC2 does: per table
    the local route, the internet gateway route (targets other than an interface) and the routes
    to network interfaces."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<DescribeRouteTablesResponse xmlns="http://ec2.amazonaws.com/doc/{API_VERSION}/">',
             "    <requestId>6f570b0b-9c18-4b07-bdec-73740dcf861a</requestId>", "    <routeTableSet>"]

    def element(depth: int, name: str, text: str) -> str:
        return f"{'    ' * depth}<{name}>{text}</{name}>"

    def route(cidr: str, target: list[tuple[str, str]], origin: str) -> list[str]:
        return ["            <item>", element(4, "destinationCidrBlock", cidr),
                *(element(4, k, v) for k, v in target), element(4, "state", "active"),
                element(4, "origin", origin), "            </item>"]

    for table in tables:
        lines += ["        <item>", element(3, "routeTableId", table),
                  element(3, "vpcId", "vpc-0123456789abcdef0"), element(3, "ownerId", "111122223333"),
                  "            <routeSet>"]
        lines += route(vpc_cidr, [("gatewayId", "local")], "CreateRouteTable")
        lines += route("0.0.0.0/0", [("gatewayId", "igw-0123456789abcdef0")], "CreateRoute")
        for (t, cidr), eni in sorted(routes.items()):
            if t == table:
                target = [("instanceId", "i-0123456789abcdef0"), ("instanceOwnerId", "111122223333"),
                          ("networkInterfaceId", eni)]
                lines += route(cidr, target, "CreateRoute")
        # An association names its route table again: the steering script must read the route
        # table id of the table itself, not of its associations.
        lines += ["            </routeSet>", "            <associationSet>", "                <item>",
                  element(5, "routeTableAssociationId", "rtbassoc-0123456789abcdef0"),
                  element(5, "routeTableId", table), element(5, "subnetId", "subnet-0123456789abcdef0"),
                  element(5, "main", "false"), "                    <associationState>",
                  element(6, "state", "associated"), "                    </associationState>",
                  "                </item>", "            </associationSet>",
                  "            <propagatingVgwSet/>", "            <tagSet/>", "        </item>"]
    lines += ["    </routeTableSet>", "</DescribeRouteTablesResponse>", ""]
    return "\n".join(lines)


class FakeAws:
    """EC2 and IMDS state; :meth:`serve` starts both servers (in a network namespace)."""

    def __init__(self, instances: Mapping[str, Instance], region: str, tables: list[str], vpc_cidr: str,
                 on_route: Callable[[str, str], None] | None = None) -> None:
        self.instances = dict(instances)
        self.region = region
        self.tables = list(tables)
        self.vpc_cidr = vpc_cidr
        self.on_route = on_route
        self.routes: dict[tuple[str, str], str] = {}
        self.calls: list[dict[str, Any]] = []
        self.imds_reads: dict[str, int] = {}
        #: (time, gateway) of every read of the role's credentials
        self.credential_reads: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.servers: list[ThreadingHTTPServer] = []

    # ---- EC2
    def verify(self, host: str, query: str) -> tuple[Instance | None, str | None]:
        """(the caller, None) when botocore signs the same parameters to the same URL."""
        pairs = parse_qsl(query, keep_blank_values=True)
        params = dict(pairs)
        if len(params) != len(pairs):
            return None, "a parameter repeated"
        try:
            access_key, _day, region, service, term = params["X-Amz-Credential"].split("/")
            when = datetime.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
            expires = int(params["X-Amz-Expires"])
        except (KeyError, ValueError):
            return None, "no usable X-Amz-Credential/Date/Expires"
        who = next((i for i in self.instances.values() if i.access_key == access_key), None)
        if who is None or (region, service, term) != (self.region, "ec2", "aws4_request"):
            return None, "unknown access key or wrong scope"
        if params.get("X-Amz-Security-Token") != who.token:
            return who, "wrong session token"
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        if not when - datetime.timedelta(minutes=5) <= now <= when + datetime.timedelta(seconds=expires):
            return who, "expired"
        operation = {k: v for k, v in pairs if not k.startswith("X-Amz-")}
        request = AWSRequest(method="GET", url=f"http://{host}/", params=operation)
        auth = SigV4QueryAuth(Credentials(who.access_key, who.secret, who.token), "ec2", self.region,
                              expires=expires)
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            auth.add_auth(request)
        if dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=True)) != params:
            return who, "SignatureDoesNotMatch"
        return who, None

    def ec2(self, host: str, query: str) -> tuple[int, str]:
        params = dict(parse_qsl(query, keep_blank_values=True))
        action = params.get("Action", "")
        who, problem = self.verify(host, query)
        changed: tuple[str, str] | None = None
        with self.lock:
            call: dict[str, Any] = {"t": round(time.time(), 3), "who": who.name if who else None,
                                    "action": action, "accepted": problem is None}
            self.calls.append(call)
            if problem:
                call["why"] = problem
                return 401 if problem != "expired" else 400, _error("AuthFailure", problem)
            if action == "DescribeRouteTables":
                tables = [v for k, v in sorted(params.items()) if k.startswith("RouteTableId.")]
                unknown = [t for t in tables if t not in self.tables]
                if unknown:
                    return 400, _error("InvalidRouteTableID.NotFound",
                                       f"The route table '{unknown[0]}' does not exist")
                return 200, describe_route_tables_xml(tables or self.tables, self.routes, self.vpc_cidr)
            if action not in ("ReplaceRoute", "CreateRoute"):
                return 400, _error("InvalidAction", f"The action {action} is not valid for this web service.")
            table, cidr, eni = (params.get(k, "") for k in ("RouteTableId", "DestinationCidrBlock",
                                                           "NetworkInterfaceId"))
            call.update(table=table, cidr=cidr, eni=eni, was=self.routes.get((table, cidr)))
            if table not in self.tables:
                call["accepted_by_ec2"] = False
                return 400, _error("InvalidRouteTableID.NotFound",
                                   f"The routeTable ID '{table}' does not exist")
            if eni not in {i.eni for i in self.instances.values()}:
                call["accepted_by_ec2"] = False
                return 400, _error("InvalidNetworkInterfaceID.NotFound",
                                   f"The networkInterface ID '{eni}' does not exist")
            if action == "ReplaceRoute" and (table, cidr) not in self.routes:
                call["accepted_by_ec2"] = False
                return 400, _error("InvalidRoute.NotFound",
                                   f"no route with destination-cidr-block {cidr} in {table}")
            if action == "CreateRoute" and (table, cidr) in self.routes:
                call["accepted_by_ec2"] = False
                return 400, _error("RouteAlreadyExists", f"The route identified by {cidr} already exists.")
            self.routes[(table, cidr)] = eni
            call["accepted_by_ec2"] = True
            changed = (cidr, eni)
        if changed and self.on_route is not None:
            self.on_route(*changed)
        return 200, (f'<{action}Response xmlns="http://ec2.amazonaws.com/doc/{API_VERSION}/">\n'
                     "    <requestId>59dbff89-35bd-4eac-99ed-be587e000000</requestId>\n"
                     f"    <return>true</return>\n</{action}Response>\n")

    # ---- IMDS
    def imds(self, client_ip: str, path: str) -> tuple[int, str]:
        who = next((i for i in self.instances.values() if i.private_ip == client_ip), None)
        if who is None:
            return 404, ""
        with self.lock:
            self.imds_reads[who.name] = self.imds_reads.get(who.name, 0) + 1
            if path.endswith(f"/iam/security-credentials/{ROLE}"):
                self.credential_reads.append((time.time(), who.name))
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=6)
        expiration = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
        answers = {
            "mac": who.mac,
            f"network/interfaces/macs/{who.mac}/interface-id": who.eni,
            "iam/security-credentials/": ROLE,
            f"iam/security-credentials/{ROLE}": (
                '{\n  "Code" : "Success",\n  "LastUpdated" : "2026-11-25T12:00:00Z",\n'
                '  "Type" : "AWS-HMAC",\n'
                f'  "AccessKeyId" : "{who.access_key}",\n  "SecretAccessKey" : "{who.secret}",\n'
                f'  "Token" : "{who.token}",\n  "Expiration" : "{expiration}"\n}}'),
        }
        prefix = "/latest/meta-data/"
        body = answers.get(path.removeprefix(prefix)) if path.startswith(prefix) else None
        return (404, "") if body is None else (200, body)

    # ---- servers
    def serve(self, ns: str | None, ec2_address: str, imds_address: str, port: int = 80) -> None:
        """EC2 on ``ec2_address`` and IMDS on ``imds_address``, both on ``port`` (0: any free)
        inside network namespace ``ns`` (None: this one)."""
        fake = self

        def handler(kind: str) -> type[BaseHTTPRequestHandler]:
            class Handler(BaseHTTPRequestHandler):
                def do_GET(self) -> None:
                    parts = urlsplit(self.path)
                    if kind == "ec2" and parts.path == "/" and parts.query:
                        code, body = fake.ec2(self.headers.get("Host", ""), parts.query)
                    elif kind == "imds":
                        code, body = fake.imds(self.client_address[0], parts.path)
                    else:
                        code, body = 404, ""
                    data = body.encode()
                    self.send_response(code)
                    kind_type = "text/xml;charset=UTF-8" if kind == "ec2" else "text/plain"
                    self.send_header("Content-Type", kind_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

                def log_message(self, *args: object) -> None:
                    pass

            return Handler

        for kind, address in (("ec2", ec2_address), ("imds", imds_address)):
            def make(a: str = address, k: str = kind) -> ThreadingHTTPServer:
                return QuietServer((a, port), handler(k))

            server = in_netns(ns, make) if ns else make()
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)

    def shutdown(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    # ---- figures
    def summary(self) -> dict[str, Any]:
        """Calls by action, the rejected ones with why, and every accepted claim of a route:
        ``takeovers`` moved a route from the primary's interface (or none) to the standby's,
        ``failbacks`` from the standby's to the primary's."""
        with self.lock:
            calls = list(self.calls)
        eni_of = {i.eni: i.name for i in self.instances.values()}
        by_action: dict[str, int] = {}
        for c in calls:
            if c["accepted"]:
                by_action[c["action"]] = by_action.get(c["action"], 0) + 1
        claims = [[c["t"], c["who"], c["action"], c["cidr"], eni_of.get(c["was"] or "", c["was"]),
                   eni_of.get(c["eni"], c["eni"])]
                  for c in calls if c.get("accepted_by_ec2")]
        return {
            "ec2_calls": by_action,
            "ec2_rejected": len([c for c in calls if not c["accepted"]]),
            "ec2_rejected_why": sorted({str(c.get("why")) for c in calls if not c["accepted"]}),
            "ec2_refused": len([c for c in calls if c["accepted"] and c.get("accepted_by_ec2") is False]),
            "ec2_claims": claims,
            "takeovers": len([c for c in claims if c[5] == "a2" and c[4] != "a2"]),
            "failbacks": len([c for c in claims if c[5] == "a1" and c[4] == "a2"]),
            "imds_reads": dict(self.imds_reads),
        }
