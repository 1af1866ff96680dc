"""The rehearsal plan: the two gateways exactly as the program would configure them.

A :class:`LabPlan` is what the Pulumi program hands to the lab engine: for each gateway its
addresses, the networks behind it, the files it pushes (path on OpenBSD -> content and mode) and
the private key the gateway made at first boot.  Everything is frozen and round-trips through
JSON (``to_json``/``from_json``) because the plan crosses into the user-mode-linux guest as a file.

The private keys are never part of ``repr()``; the JSON form does carry them (the guest needs
them), so whoever writes it to disk must keep the file 0600 and remove it afterwards
(:func:`cross_cloud_vpn.lab.uml.run_rehearsal` does).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..openbsd import parse_bootstrap

IKED_CONF = "/etc/iked.conf"
PF_CONF = "/etc/pf.conf"
SYSCTL_CONF = "/etc/sysctl.conf"
PUBKEY_DIR = "/etc/iked/pubkeys/ipv4/"
AUTH_MODES = ("pubkey", "psk")


@dataclass(frozen=True)
class PushedFile:
    """One file as the program pushes it to the gateway."""

    content: str
    mode: int  # e.g. 0o600

    def to_dict(self) -> dict[str, Any]:
        return {"content": self.content, "mode": self.mode}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> PushedFile:
        return PushedFile(content=str(data["content"]), mode=int(data["mode"]))


def _frozen_files(files: Mapping[str, PushedFile]) -> Mapping[str, PushedFile]:
    return MappingProxyType(dict(files))


@dataclass(frozen=True)
class GatewayPlan:
    """One OpenBSD gateway.

    ``files`` maps OpenBSD absolute paths to files: ``/etc/iked.conf`` always,
    ``/etc/iked/pubkeys/ipv4/<peer public ip>`` (the peer's public key) in pubkey mode,
    ``/etc/pf.conf`` (written to the gateway's /etc; pf does not run on Linux, the guard stands
    in) and ``/etc/sysctl.conf`` (only ``net.inet.ip.forwarding=1`` is honoured, by enabling
    ip_forward).
    """

    name: str
    public_ip: str
    private_ip: str
    gateway_subnet: str
    workload_cidrs: tuple[str, ...]
    files: Mapping[str, PushedFile]
    private_key_pem: str = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "workload_cidrs", tuple(self.workload_cidrs))
        object.__setattr__(self, "files", _frozen_files(self.files))

    @property
    def iked_conf(self) -> str:
        return self.files[IKED_CONF].content

    def ip_forwarding(self) -> bool:
        """True when the pushed /etc/sysctl.conf turns on net.inet.ip.forwarding."""
        sysctl = self.files.get(SYSCTL_CONF)
        if sysctl is None:
            return False
        on = False
        for raw in sysctl.content.splitlines():
            line = raw.split("#", 1)[0].strip()
            m = re.fullmatch(r"net\.inet\.ip\.forwarding\s*=\s*(\S+)", line)
            if m:
                on = m.group(1) == "1"
        return on

    def iked_files(self) -> dict[str, PushedFile]:
        """The pushed files under /etc/iked/, keyed by their path relative to /etc/iked/."""
        return {
            path[len("/etc/iked/") :]: f for path, f in self.files.items() if path.startswith("/etc/iked/")
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "public_ip": self.public_ip,
            "private_ip": self.private_ip,
            "gateway_subnet": self.gateway_subnet,
            "workload_cidrs": list(self.workload_cidrs),
            "files": {path: f.to_dict() for path, f in sorted(self.files.items())},
            "private_key_pem": self.private_key_pem,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> GatewayPlan:
        return GatewayPlan(
            name=str(data["name"]),
            public_ip=str(data["public_ip"]),
            private_ip=str(data["private_ip"]),
            gateway_subnet=str(data["gateway_subnet"]),
            workload_cidrs=tuple(str(c) for c in data["workload_cidrs"]),
            files={str(p): PushedFile.from_dict(f) for p, f in data["files"].items()},
            private_key_pem=str(data["private_key_pem"]),
        )


@dataclass(frozen=True)
class LabPlan:
    """Both gateways, before and (optionally) after the config change."""

    auth_mode: str  # "pubkey" or "psk"
    gateways: tuple[GatewayPlan, GatewayPlan]
    changed: tuple[GatewayPlan, GatewayPlan] | None
    pings: int = 10
    check_script: str | None = None
    """The program's tunnel-check script (its check command's stdin), run unchanged on each gateway."""
    reconfigure: tuple[tuple[str, str], ...] = ()
    """Rounds of the program's bootstrap scripts (one per gateway, in ``gateways`` order) for
    configures that leave iked.conf as it is; each runs unchanged on its gateway while pings flow."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reconfigure", tuple((a, b) for a, b in self.reconfigure))

    def to_dict(self) -> dict[str, Any]:
        return {
            "auth_mode": self.auth_mode,
            "gateways": [g.to_dict() for g in self.gateways],
            "changed": None if self.changed is None else [g.to_dict() for g in self.changed],
            "pings": self.pings,
            "check_script": self.check_script,
            "reconfigure": [list(pair) for pair in self.reconfigure],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> LabPlan:
        gws = [GatewayPlan.from_dict(g) for g in data["gateways"]]
        if len(gws) != 2:
            raise ValueError("a LabPlan has exactly two gateways")
        changed: tuple[GatewayPlan, GatewayPlan] | None = None
        if data.get("changed") is not None:
            ch = [GatewayPlan.from_dict(g) for g in data["changed"]]
            if len(ch) != 2:
                raise ValueError("changed must hold exactly two gateways")
            changed = (ch[0], ch[1])
        return LabPlan(
            auth_mode=str(data["auth_mode"]),
            gateways=(gws[0], gws[1]),
            changed=changed,
            pings=int(data.get("pings", 10)),
            check_script=data.get("check_script"),
            reconfigure=tuple((str(a), str(b)) for a, b in data.get("reconfigure", [])),
        )

    @staticmethod
    def from_json(text: str) -> LabPlan:
        return LabPlan.from_dict(json.loads(text))

    def problems(self) -> list[str]:
        """What makes this plan unusable for a rehearsal (empty when it is fine)."""
        out: list[str] = []
        if self.auth_mode not in AUTH_MODES:
            out.append(f"auth_mode must be one of {AUTH_MODES}, not {self.auth_mode!r}")
        if self.pings < 1:
            out.append("pings must be >= 1")
        out += _pair_problems(self.auth_mode, self.gateways, "gateways")
        for n, scripts in enumerate(self.reconfigure, start=1):
            for g, script in zip(self.gateways, scripts, strict=True):
                try:
                    pushed = parse_bootstrap(script).files.get(IKED_CONF)
                except ValueError as e:
                    out.append(f"reconfigure round {n} [{g.name}]: {e}")
                    continue
                if pushed is None or pushed[0] != g.iked_conf:
                    out.append(f"reconfigure round {n} [{g.name}] changes iked.conf; that round must not")
        if self.changed is not None:
            out += _pair_problems(self.auth_mode, self.changed, "changed")
            for before, after in zip(self.gateways, self.changed, strict=True):
                for attr in ("name", "public_ip", "private_ip", "gateway_subnet"):
                    if getattr(before, attr) != getattr(after, attr):
                        out.append(
                            f"changed[{before.name}].{attr} differs from the original; the change phase "
                            "only changes workload CIDRs and files"
                        )
                if before.private_key_pem != after.private_key_pem:
                    out.append(f"changed[{before.name}] has another private key (keys are made once)")
        return out


def _pair_problems(auth_mode: str, pair: tuple[GatewayPlan, GatewayPlan], label: str) -> list[str]:
    out: list[str] = []
    a, b = pair
    if a.name == b.name:
        out.append(f"{label}: both gateways are named {a.name!r}")
    if a.public_ip == b.public_ip:
        out.append(f"{label}: both gateways have public IP {a.public_ip}")
    nets: list[tuple[str, ipaddress.IPv4Network]] = []
    for g in pair:
        where = f"{label}[{g.name}]"
        try:
            ipaddress.IPv4Address(g.public_ip)
            priv = ipaddress.IPv4Address(g.private_ip)
            subnet = ipaddress.IPv4Network(g.gateway_subnet)
            if priv not in subnet:
                out.append(f"{where}: private_ip {priv} is not inside gateway_subnet {subnet}")
            nets.append((f"{g.name} gateway_subnet", subnet))
            if not g.workload_cidrs:
                out.append(f"{where}: no workload CIDRs")
            for c in g.workload_cidrs:
                net = ipaddress.IPv4Network(c)
                if net.num_addresses < 16:
                    out.append(f"{where}: workload CIDR {c} is too small for the lab (needs .1 and .10)")
                nets.append((f"{g.name} workload {c}", net))
        except ValueError as e:
            out.append(f"{where}: {e}")
            continue
        conf = g.files.get(IKED_CONF)
        if conf is None:
            out.append(f"{where}: no {IKED_CONF}")
        elif conf.mode & 0o037:
            out.append(f"{where}: {IKED_CONF} mode {conf.mode:o} is too open (iked wants 0600 or 0640)")
        peer = b if g is a else a
        key_path = PUBKEY_DIR + peer.public_ip
        if auth_mode == "pubkey" and key_path not in g.files:
            out.append(f"{where}: pubkey mode but no peer key {key_path}")
        if not g.private_key_pem.strip():
            out.append(f"{where}: empty private_key_pem")
    for i, (n1, x) in enumerate(nets):
        for n2, y in nets[i + 1 :]:
            if x.overlaps(y):
                out.append(f"{label}: {n1} overlaps {n2}")
    return out
