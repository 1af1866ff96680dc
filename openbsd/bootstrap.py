"""Shell scripts the program runs on a gateway over SSH, as root through ``doas -n /bin/sh -s``.

Every script is sent on standard input, never on a command line, so a PSK inside a file
never shows in a process list or a log. The bootstrap stages each file, checks it with the
daemon's own parser (``iked -n``, ``pfctl -nf``) and installs nothing unless every check
passes: a bad file never replaces a working one. It then touches only what changed: pf is
reloaded when pf.conf changed, iked restarted only when iked.conf changed (a restart drops every
SA without a DELETE), started when it is not running; a new peer key needs nothing, because iked
reads the peer's key file at each authentication (sbin/iked/ca.c ca_validate_pubkey()). A daemon
that re-reads its file in place (bgpd: ``bgpctl reload``) is reloaded instead of restarted.

:func:`parse_bootstrap` reads the files back out of a rendered script; the local rehearsal
uses it so that what it runs is exactly what the program would push.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

#: The remote command every script here is fed to. ``-s`` reads the script from stdin; ``-n``
#: (doas(1): non-interactive) makes doas fail at once instead of waiting for a password no one
#: types. On an image whose doas.conf lacks ``nopass`` for the admin user, every command then
#: fails before the script starts, and what Pulumi shows is doas's own message on stderr, with
#: nothing on stdout: "doas: Authentication required" (a rule without nopass: doas.c, `if (nflag)
#: errx(1, "Authentication required")`) or "doas: Operation not permitted" (no rule at all).
REMOTE_SHELL = "doas -n /bin/sh -s"

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
    """One file the bootstrap installs, the command that must accept it first, and what a change
    of it needs: ``load`` runs on the staged copy before it is installed (``pfctl -f {path}``),
    ``restarts`` names the rc.d daemon to restart once it is installed, or, with ``reload``, the
    command that makes that daemon, while it runs, re-read the installed file instead
    (``bgpctl reload``: bgpd keeps running). An unchanged file (``cmp``) is left alone and
    needs none of these; a stopped daemon is started whatever changed."""

    path: str
    content: str = field(repr=False)
    mode: int
    check: str | None = None  # a command with {path} where the staged copy goes
    load: str | None = None  # likewise, run only when the file changed
    restarts: str | None = None  # an rc.d daemon name
    reload: str | None = None  # a command, run in place of `rcctl restart` for that daemon


def _check_path(path: str) -> None:
    if not re.fullmatch(r"/[A-Za-z0-9_./-]+", path) or "/../" in path:
        raise ValueError(f"unsafe path {path!r}")


def _daemon_reloads(files: Sequence[ConfigFile]) -> dict[str, str | None]:
    """Each daemon a file names, with the command that reloads it (None: it is restarted)."""
    reloads: dict[str, set[str | None]] = {}
    for f in files:
        if f.reload and not f.restarts:
            raise ValueError(f"{f.path}: reload {f.reload!r} names no daemon (restarts)")
        if f.restarts:
            reloads.setdefault(f.restarts, set()).add(f.reload)
    for daemon, commands in reloads.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", daemon):
            raise ValueError(f"unsafe daemon name {daemon!r}")
        if len(commands) > 1:
            raise ValueError(f"the files of {daemon} disagree on how it reloads: "
                             f"{sorted(map(str, commands))}")
    return {daemon: reloads[daemon].pop() for daemon in sorted(reloads)}


def _file_block(index: int, f: ConfigFile) -> list[str]:
    _check_path(f.path)
    content = f.content if f.content.endswith("\n") else f.content + "\n"
    if f"\n{_EOF}\n" in f"\n{content}":
        raise ValueError(f"{f.path} holds the line {_EOF}, which ends the here-document")
    return [
        f"# file {f.path} {f.mode:04o}",
        f"cat > \"$stage/{index}\" <<'{_EOF}'",
        content + _EOF,
    ]


def render_bootstrap(
    files: Sequence[ConfigFile], sysctl_lines: Sequence[str], directories: Sequence[str] = ()
) -> str:
    """Stage and check ``files``; install those that changed; make ``directories`` (0755, for a
    daemon that drops privileges); set ``sysctl_lines``; load, reload or restart only what a
    changed file needs; start a daemon that is not running. Prints one status line saying what
    it did."""
    if not files:
        raise ValueError("nothing to install")
    reloads = _daemon_reloads(files)
    for directory in directories:
        _check_path(directory)
    lines = [
        "# cross-cloud-vpn bootstrap: runs as root (doas -n /bin/sh -s), read from stdin.",
        "# Everything sits in main() so the shell has read the whole script before any",
        "# command runs: nothing it starts can swallow the rest of stdin.",
        "main() {",
        "set -eu",
        "umask 077",
        "stage=$(mktemp -d /tmp/ccvpn.XXXXXXXXXX)",
        "trap 'rm -rf \"$stage\"' EXIT",
        'changed=""',
        *(f"restart_{daemon}=no" for daemon in reloads),
    ]
    for index, f in enumerate(files, start=1):
        lines += _file_block(index, f)
    lines.append("# Check every file before any of them replaces a running one.")
    for index, f in enumerate(files, start=1):
        if f.check:
            lines.append(f.check.format(path=f'"$stage/{index}"'))
    lines.append("# All checks passed: install what changed, nothing else.")
    parents = sorted({f.path.rsplit("/", 1)[0] for f in files} - {"/etc"})
    lines += [f"mkdir -p {shlex.quote(parent)}" for parent in parents]
    # umask 022 for the parents install -d makes too: under the script's 077 they would be 0700.
    lines += [f"(umask 022; install -d -o root -g wheel -m 0755 {shlex.quote(d)})" for d in directories]
    for index, f in enumerate(files, start=1):
        path = shlex.quote(f.path)
        lines.append(f'if ! cmp -s "$stage/{index}" {path}; then')
        if f.load:
            # Loaded from the staged copy first: the installed file is always what was loaded.
            lines.append("  " + f.load.format(path=f'"$stage/{index}"'))
        lines.append(f'  install -o root -g wheel -m {f.mode:04o} "$stage/{index}" {path}')
        lines.append(f'  changed="$changed {f.path}{" (loaded)" if f.load else ""}"')
        if f.restarts:
            lines.append(f"  restart_{f.restarts}=yes")
        lines.append("fi")
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
        'did="changed:${changed:- nothing}"',
    ]
    for daemon, reload in reloads.items():
        # rcctl(8) check: exit 0 when the daemon runs. A restart drops its SAs (iked) or sessions,
        # so only a changed config restarts it, or reloads it where the daemon can re-read its file
        # in place (bgpd); a stopped daemon is started whatever changed.
        again = (f"  {reload} >/dev/null; did=\"$did; {daemon} reloaded\"" if reload else
                 f"  rcctl restart {daemon} >/dev/null; did=\"$did; {daemon} restarted\"")
        lines += [
            f"rcctl enable {daemon} >/dev/null",
            f"if ! rcctl check {daemon} >/dev/null 2>&1; then",
            f"  rcctl start {daemon} >/dev/null; did=\"$did; {daemon} started\"",
            f'elif [ "$restart_{daemon}" = yes ]; then',
            again,
            "else",
            f'  did="$did; {daemon} left running"',
            "fi",
        ]
    lines += [
        'echo "cross-cloud-vpn: $did"',
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

    OpenBSD's ``/etc/rc`` (``make_keys``) makes an ECDSA P-256 pair at first boot (it prints
    "openssl: generating iked ECDSA keys"): ``openssl ecparam -genkey -name prime256v1 -out
    /etc/iked/private/local.key``, then ``openssl ec -in ... -pubout -out /etc/iked/local.pub``.
    A missing pair is made exactly so here; a missing ``local.pub`` is derived with ``openssl
    pkey``, which takes any key type (an older image's RSA key too). The private key stays on
    the host: only ``local.pub`` is printed. openssl's own error goes to stderr if it fails.
    """
    return "\n".join(
        [
            "main() {",
            "set -eu",
            "key=/etc/iked/private/local.key pub=/etc/iked/local.pub",
            'if [ ! -s "$pub" ]; then',
            '  if [ ! -s "$key" ]; then',
            '    (umask 077; openssl ecparam -genkey -name prime256v1 -out "$key")',
            '    chmod 600 "$key"',
            "  fi",
            '  openssl pkey -in "$key" -pubout -out "$pub"',
            "fi",
            'cat "$pub"',
            "}",
            "main </dev/null",
            "",
        ]
    )


#: The iked lines of the system log shown when the tunnel is not up: on OpenBSD iked logs
#: through syslog(3) as a daemon, which /etc/syslog.conf writes to /var/log/daemon.
IKED_LOG = "/var/log/daemon"
_LOG_LINES = 20


def render_tunnel_check_script(wait_seconds: int = 120, require_up: bool = True) -> str:
    """Wait up to ``wait_seconds`` for the tunnel; the first line printed is ``tunnel: up`` or
    ``tunnel: down``, then what ``ikectl show sa`` said.

    Up means an ESTABLISHED IKE SA with at least one child SA loaded into the kernel: ikectl
    prints each child SA as ``  sa_childsas: ... (FLAGS) ...`` under its ``iked_sas: ...`` line,
    and FLAGS holds ``L`` once the SA is loaded (checked against real ikectl output in the
    rehearsal). When the tunnel is not up by then and ``require_up`` holds, the script exits 1
    with the ikectl output and iked's last log lines on stderr, so the update fails showing what
    the gateway sees; with ``require_up`` false it prints ``tunnel: down`` and exits 0.
    """
    if wait_seconds < 0:
        raise ValueError("wait_seconds must not be negative")
    down = (
        [
            '{ echo "cross-cloud-vpn: the tunnel is not up after '
            + str(wait_seconds)
            + 's; ikectl show sa says:"',
            '  echo "$sas"',
            f'  echo "last iked lines of {IKED_LOG}:"',
            f"  log=$(grep ' iked\\[' {IKED_LOG} 2>/dev/null | tail -n {_LOG_LINES})",
            '  echo "${log:-(none)}"',
            "} >&2",
            "return 1",
        ]
        if require_up
        else ["return 0"]
    )
    return "\n".join(
        [
            "up() {",
            "  # An ESTABLISHED IKE SA, and under it a child SA whose flags include L (loaded).",
            "  printf '%s\\n' \"$1\" | awk '",
            "    /^[ \\t]*iked_sas:/ { est = / ESTABLISHED / }",
            "    /^[ \\t]*sa_childsas:/ && est && /\\([A-Z]*L[A-Z]*\\)/ { ok = 1 }",
            "    END { exit !ok }'",
            "}",
            "main() {",
            f"deadline=$(( $(date +%s) + {wait_seconds} ))",
            "while :; do",
            "  sas=$(ikectl show sa 2>&1 || true)",
            '  if up "$sas"; then echo "tunnel: up"; echo "$sas"; return 0; fi',
            '  [ "$(date +%s)" -ge "$deadline" ] && break',
            "  sleep 2",
            "done",
            'echo "tunnel: down"; echo "$sas"',
            *down,
            "}",
            "main </dev/null",
            "",
        ]
    )
