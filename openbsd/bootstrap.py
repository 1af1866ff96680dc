"""Shell scripts the program runs on a gateway over SSH, as root through ``doas /bin/sh -s``.

Every script is sent on standard input, never on a command line, so a PSK inside a file
never shows in a process list or a log. The bootstrap stages each file, checks it with the
daemon's own parser (``iked -n``, ``pfctl -nf``) and installs nothing unless every check
passes: a bad file never replaces a working one.

:func:`parse_bootstrap` reads the files back out of a rendered script; the local rehearsal
uses it so that what it runs is exactly what the program would push.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

#: The remote command every script here is fed to. ``-s`` reads the script from stdin.
REMOTE_SHELL = "doas /bin/sh -s"

_EOF = "CCVPN_END_OF_FILE"
_FILE_BLOCK = re.compile(
    r"^# file (?P<path>/\S+) (?P<mode>0[0-7]{3})\n"
    r"cat > \"\$stage/(?P<n>\d+)\" <<'" + _EOF + r"'\n"
    r"(?P<content>.*?)^" + _EOF + r"$",
    re.MULTILINE | re.DOTALL,
)
_SYSCTL_LINE = re.compile(r"^# sysctl (?P<line>\S+=\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class ConfigFile:
    """One file the bootstrap installs, and the command that must accept it first."""

    path: str
    content: str = field(repr=False)
    mode: int
    check: str | None = None  # a command with {path} where the staged copy goes


def _file_block(index: int, f: ConfigFile) -> list[str]:
    if not re.fullmatch(r"/[A-Za-z0-9_./-]+", f.path) or "/../" in f.path:
        raise ValueError(f"unsafe path {f.path!r}")
    content = f.content if f.content.endswith("\n") else f.content + "\n"
    if f"\n{_EOF}\n" in f"\n{content}":
        raise ValueError(f"{f.path} holds the line {_EOF}, which ends the here-document")
    return [
        f"# file {f.path} {f.mode:04o}",
        f"cat > \"$stage/{index}\" <<'{_EOF}'",
        content + _EOF,
    ]


def render_bootstrap(files: Sequence[ConfigFile], sysctl_lines: Sequence[str]) -> str:
    """Stage, check, then install ``files``; set ``sysctl_lines``; (re)start iked, reload pf."""
    if not files:
        raise ValueError("nothing to install")
    lines = [
        "# cross-cloud-vpn bootstrap: runs as root (doas /bin/sh -s), read from stdin.",
        "# Everything sits in main() so the shell has read the whole script before any",
        "# command runs: nothing it starts can swallow the rest of stdin.",
        "main() {",
        "set -eu",
        "umask 077",
        "stage=$(mktemp -d /tmp/ccvpn.XXXXXXXXXX)",
        "trap 'rm -rf \"$stage\"' EXIT",
    ]
    for index, f in enumerate(files, start=1):
        lines += _file_block(index, f)
    lines.append("# Check every file before any of them replaces a running one.")
    for index, f in enumerate(files, start=1):
        if f.check:
            lines.append(f.check.format(path=f'"$stage/{index}"'))
    lines.append("# All checks passed: install.")
    parents = sorted({f.path.rsplit("/", 1)[0] for f in files} - {"/etc"})
    lines += [f"mkdir -p {shlex.quote(parent)}" for parent in parents]
    for index, f in enumerate(files, start=1):
        lines.append(
            f'install -o root -g wheel -m {f.mode:04o} "$stage/{index}" {shlex.quote(f.path)}'
        )
    for line in sysctl_lines:
        if not re.fullmatch(r"[a-z0-9_.]+=[A-Za-z0-9_.-]+", line):
            raise ValueError(f"unsafe sysctl line {line!r}")
        lines += [
            f"# sysctl {line}",
            f"grep -qxF '{line}' /etc/sysctl.conf 2>/dev/null || echo '{line}' >> /etc/sysctl.conf",
            f"sysctl -q '{line}' >/dev/null",
        ]
    lines += [
        "ifconfig enc0 up",
        "pfctl -e 2>/dev/null || true",
        "pfctl -f /etc/pf.conf",
        "rcctl enable iked >/dev/null",
        "rcctl restart iked >/dev/null",
        'echo "cross-cloud-vpn: configuration installed, iked restarted, pf reloaded"',
        "}",
        "main </dev/null",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ParsedBootstrap:
    """What a rendered bootstrap script installs: path -> (content, mode), and sysctl lines."""

    files: dict[str, tuple[str, int]]
    sysctl_lines: tuple[str, ...]


def parse_bootstrap(script: str) -> ParsedBootstrap:
    """The files a script from :func:`render_bootstrap` installs, read back from its text."""
    files = {
        m["path"]: (m["content"], int(m["mode"], 8)) for m in _FILE_BLOCK.finditer(script)
    }
    if not files:
        raise ValueError("no file blocks found: not a cross-cloud-vpn bootstrap script")
    sysctls = tuple(m["line"] for m in _SYSCTL_LINE.finditer(script))
    return ParsedBootstrap(files=files, sysctl_lines=sysctls)


def render_read_pubkey_script() -> str:
    """Print the gateway's own iked public key, making the pair first if boot did not.

    OpenBSD's ``/etc/rc`` makes this RSA pair at first boot; an image that was cleaned of
    it and not booted since gets one made the same way here. The private key stays on the
    host: only ``local.pub`` is printed.
    """
    return "\n".join(
        [
            "main() {",
            "set -eu",
            "if [ ! -s /etc/iked/local.pub ]; then",
            "  if [ ! -s /etc/iked/private/local.key ]; then",
            "    (umask 077; openssl genrsa -out /etc/iked/private/local.key 2048 2>/dev/null)",
            "  fi",
            "  openssl rsa -in /etc/iked/private/local.key -pubout -out /etc/iked/local.pub 2>/dev/null",
            "fi",
            "cat /etc/iked/local.pub",
            "}",
            "main </dev/null",
            "",
        ]
    )


def render_tunnel_check_script(wait_seconds: int = 120) -> str:
    """Wait up to ``wait_seconds`` for an established IKE SA with child SAs; print ``tunnel: up``
    or ``tunnel: down`` and then what ``ikectl show sa`` said (checked against real ikectl output in
    the rehearsal)."""
    if wait_seconds < 0:
        raise ValueError("wait_seconds must not be negative")
    return "\n".join(
        [
            "main() {",
            f"deadline=$(( $(date +%s) + {wait_seconds} ))",
            "while :; do",
            "  sas=$(ikectl show sa 2>/dev/null || true)",
            "  # Up means an established IKE SA that carries child SAs, not a half-made one.",
            '  case "$sas" in',
            '    *ESTABLISHED*sa_childsas*) echo "tunnel: up"; echo "$sas"; return 0 ;;',
            "  esac",
            '  [ "$(date +%s)" -ge "$deadline" ] && break',
            "  sleep 2",
            "done",
            'echo "tunnel: down"; ikectl show sa 2>&1 || true',
            "}",
            "main </dev/null",
            "",
        ]
    )
