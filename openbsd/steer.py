"""AWS route-table steering, the HA mode that costs nothing (issue 13, research/ha.md section 1d).

In HA mode each side has two gateways, each with its own tunnel to one gateway of the other
cloud and a BGP session with it through that tunnel (``openbsd/bgpd.py``). Instead of an AWS
VPC Route Server (billed per endpoint-hour), the two AWS gateways move the workload route
tables' routes to the other cloud's networks themselves, through the EC2 API and their
instance role (``ec2:ReplaceRoute``/``ec2:CreateRoute`` on the route tables,
``ec2:DescribeRouteTables``). Each runs :func:`render_steer_script`, a POSIX-sh loop:

- **own health**: this gateway's BGP session to its tunnel peer is Established, asked exactly
  as the probe responder asks it (:func:`openbsd.probe.bgp_established_command`);
- **owner** of each route: DescribeRouteTables, the route's ``networkInterfaceId``;
- **decision**: never claim while unhealthy; the primary claims (ReplaceRoute, or CreateRoute
  when the route is missing) whenever it is healthy and not the owner, so it takes the routes
  back once it recovers; the standby claims only when healthy, not the owner, and its partner's
  probe responder (``openbsd/probe.py``: ``GET /up`` is 200 only while the partner's BGP
  session is up) failed ``misses`` times in a row. In the round of that ``misses``-th failure it
  claims every route with no DescribeRouteTables first (its partner held them; replacing a route
  it already holds changes nothing), and describes as usual from the next round on.
- **ready to claim**: every round ends by keeping the instance role's credentials (read again
  every ``CREDENTIAL_REFRESH_S``) and the day's SigV4 signing key ready, so that a claim, even
  after hours of idling, makes no IMDS read and no key derivation: only its own signed calls.

Limits, by design: no leader election beyond "the primary wins". If both gateways are healthy but
the standby cannot reach the primary's responder (a partition between the two only), the standby
takes the routes every ``misses`` rounds and the primary takes them back the next round: both
tunnels work then, so traffic keeps flowing, at the cost of route churn and API calls. A healthy
primary asks DescribeRouteTables once per round: about 28 calls a minute at the default 2 s, 57
at 1 s (``benchmarks/bench_steer.py``), the standby only while its partner's probe is failing.
EC2 throttles each API separately with a token bucket per account and region; for a
non-mutating action its example is a bucket of 100 tokens refilled at 20 a second ("Request
throttling for the Amazon EC2 API", https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html),
so one primary uses at most 1/40 (2 s) or 1/20 (1 s) of DescribeRouteTables' refill rate,
leaving room for other such deployments and tools in one account and region. A throttled call
(RequestLimitExceeded) fails like any other: no claim that round, tried again the next.

The EC2 calls are SigV4 presigned GET URLs (query-string authentication), because OpenBSD's
ftp(1), the only HTTPS client in base, sends GET requests with no custom header (research/ha.md
section 1d). The signature is computed in sh with ``openssl dgst -sha256`` only: HMAC is done
by hand (RFC 2104) so that the secret key and the keys derived from it travel only on pipes.
``openssl dgst -hmac key`` and ``-mac HMAC -macopt hexkey:...`` (OpenSSL 3; LibreSSL's
openssl(1) documents ``-hmac key`` for dgst) put the key on a command line, where ps(1) shows
it to every local user; a pipe does not.

The only openssl(1) commands used are ``dgst -sha256`` (with ``-binary`` for an HMAC's inner
digest) and ``base64 -d``; LibreSSL's openssl has both (usr.bin/openssl/openssl.c, its command
table: "dgst", dgst_main; "base64", enc_main), and ``-binary`` is a dgst option since OpenSSL
0.9, before LibreSSL's fork (not run here). Its ``dgst`` output line differs from OpenSSL 3's;
the script keeps the text after the last space. A signature costs seven processes (date, one
awk, five openssl; the key's HMAC pads are made once per day), a call one fetch more.

Proven here (``tests/test_openbsd_steer.py``): the rendered script, run by Debian's dash with
OpenSSL 3, mawk and curl as the fetch command, signs exactly as botocore does, and against a
fake EC2 that verifies every signature with botocore it claims, holds off and takes over as
described; the role changes also run under mksh (a pdksh, like OpenBSD's ksh) with the one true
awk (Debian's original-awk, the lineage of OpenBSD's awk) where those are installed. **Not
proven here**: OpenBSD's own ksh, awk, sleep, LibreSSL and ftp(1) running it (in particular that
ftp(1) sends the URL's query string byte for byte, with a ``Host`` header without ``:443``, and
exits non-zero on an HTTP error); the real EC2 API and IMDS.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .probe import DEFAULT_PROBE_FILE, bgp_established_command, check_probe_port

#: Where the steering script is installed (hier(7): /usr/local/libexec holds "system daemons
#: and utilities" of local software) and its mode.
STEER_SCRIPT_PATH = "/usr/local/libexec/ccvpn-steer"
STEER_SCRIPT_MODE = 0o755
#: The rc.d(8) name; rcctl(8) enables and restarts it like any daemon.
STEER_DAEMON = "ccvpn_steer"
STEER_RC_PATH = f"/etc/rc.d/{STEER_DAEMON}"
#: OpenBSD installs its own /etc/rc.d scripts 0555 (etc/Makefile).
STEER_RC_MODE = 0o555
#: The syslog tag of every line the script logs (logger(1) -t).
STEER_LOG_TAG = "ccvpn-steer"

#: Seconds between rounds. The standby's decision takes ``misses`` rounds, so the round is much
#: of the AWS->Azure takeover time; 1 s would be safe for EC2's throttling (module docstring)
#: and cuts the bench's takeover from 2.6 to 1.7 s, but tests/test_lab_ha.py pins the rendered
#: default at 2 (a change for whoever owns that test and lab/README.md's figures).
DEFAULT_INTERVAL = 2.0
DEFAULT_MISSES = 2
#: EC2 Query API version of ReplaceRoute, CreateRoute, DescribeRouteTables.
EC2_API_VERSION = "2016-11-15"
#: Seconds a presigned URL stays valid (X-Amz-Expires): it is used at once.
URL_EXPIRES = 60
#: Longest wait for one EC2 call, one IMDS read, one partner probe, one health test (seconds).
API_TIMEOUT = 10
PROBE_TIMEOUT = 1
HEALTH_TIMEOUT = 5
#: Longest wait for one IMDS read (seconds): IMDS is the instance's own link-local service
#: (botocore's metadata_service_timeout defaults to 1 s), and a standby reads it in idle rounds,
#: whose length is its reaction time.
IMDS_TIMEOUT = 2
#: Credentials are read again from IMDS this often (seconds of loop), at the end of a round, so
#: that a claim never waits for them, and before the next call after any failed call. AWS makes
#: new role credentials available "at least five minutes before the expiration of the old
#: credentials" (EC2 user guide, IAM roles for EC2): what is kept has minutes of validity left.
CREDENTIAL_REFRESH_S = 60
#: After a failed periodic read, the kept credentials are used and the read is tried again this
#: much later (seconds of loop).
CREDENTIAL_RETRY_S = 5

#: The real defaults the environment may replace (tests run the same script against fakes).
#: ftp(1) (synopsis ``ftp [-46AadEegiMmnptVv]``, ftp.1 rev 1.124) -M: no progress meter,
#: -V: not verbose, -o -: the body to standard output.
DEFAULT_FETCH = "ftp -M -V -o -"
DEFAULT_IMDS = "http://169.254.169.254"

_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]+")
_ROUTE_TABLE = re.compile(r"rtb-[0-9a-f]{8,17}")


@dataclass(frozen=True)
class RouteTableSteering:
    """What one AWS HA gateway steers, and how quickly.

    ``destination_cidrs`` (the other cloud's networks) and ``probe_port`` (the port both
    gateways' probe responders listen on) may stay empty/None inside ``GatewayHa``:
    ``render_gateway`` fills them from ``GatewaySpec.remote_cidrs`` and ``GatewayHa.probe_port``.
    """

    region: str
    route_table_ids: Sequence[str]
    #: The other AWS gateway of this side, whose probe responder the standby asks.
    partner_private_ip: str
    #: The second gateway: takes the routes only when the partner's probe keeps failing.
    standby: bool = False
    destination_cidrs: Sequence[str] = ()
    probe_port: int | None = None
    #: Seconds between two rounds (sleep(1) takes a fraction on OpenBSD and Debian).
    interval: float = DEFAULT_INTERVAL
    #: Consecutive failed partner probes after which the standby takes over.
    misses: int = DEFAULT_MISSES


def _check(s: RouteTableSteering, bgp_peer_private_ip: str) -> None:
    if not _REGION.fullmatch(s.region):
        raise ValueError(f"region {s.region!r} is not an AWS region name such as eu-west-1")
    if isinstance(s.route_table_ids, str) or not s.route_table_ids:
        raise ValueError("route_table_ids must list at least one route table (rtb-...)")
    for table in s.route_table_ids:
        if not _ROUTE_TABLE.fullmatch(table):
            raise ValueError(f"route table id {table!r} is not of the form rtb-0123456789abcdef0")
    if len(set(s.route_table_ids)) != len(s.route_table_ids):
        raise ValueError("route_table_ids lists a route table twice")
    if isinstance(s.destination_cidrs, str) or not s.destination_cidrs:
        raise ValueError("destination_cidrs must list the other cloud's networks")
    for cidr in s.destination_cidrs:
        try:
            ipaddress.IPv4Network(cidr)
        except ValueError:
            raise ValueError(f"destination CIDR {cidr!r} is not an IPv4 network") from None
    for label, address in (("partner_private_ip", s.partner_private_ip),
                           ("bgp_peer_private_ip", bgp_peer_private_ip)):
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise ValueError(f"{label} {address!r} is not an IPv4 address") from None
    if s.probe_port is None:
        raise ValueError("probe_port is needed: the standby asks its partner's probe responder")
    check_probe_port(s.probe_port)
    if not (isinstance(s.interval, int | float) and 0 < s.interval <= 60):
        raise ValueError(f"interval {s.interval!r} is outside (0, 60] seconds")
    if not (isinstance(s.misses, int) and 1 <= s.misses <= 100):
        raise ValueError(f"misses {s.misses!r} is outside 1..100")


def _seconds(value: float) -> str:
    """A number of seconds as sleep(1) reads it: 2, 0.5 (never 2.0 or 1e-05)."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    if text in ("", "0"):
        raise ValueError(f"interval {value!r} rounds to 0 s")
    return text


# The script, with @NAME@ placeholders; everything that goes in is checked by _check.
_SCRIPT = r"""#!/bin/sh
# Rendered by cross-cloud-vpn; edits are overwritten on the next `pulumi up`.
# ccvpn-steer: route-table steering of one AWS HA gateway (issue 13, the mode that costs nothing).
# Every @INTERVAL@ s: own health = the BGP session through this gateway's tunnel is Established;
# the owner of each route = DescribeRouteTables; never claim while unhealthy; the primary claims
# whenever healthy and not the owner; the standby only when healthy, not the owner, and its
# partner's probe (GET @PROBE_URL@) failed @MISSES@ times in a row.
# Started by /etc/rc.d/@DAEMON@ (rc.subr(8), rc_bg=YES); logs with logger -t @TAG@.

region='@REGION@'
tables='@TABLES@'
cidrs='@CIDRS@'
role='@ROLE@'
partner_url='@PROBE_URL@'
interval='@INTERVAL@'
misses_max=@MISSES@
refresh_loops=@REFRESH_LOOPS@
retry_loops=@RETRY_LOOPS@
expires=@EXPIRES@
api_timeout=@API_TIMEOUT@
imds_timeout=@IMDS_TIMEOUT@
probe_timeout=@PROBE_TIMEOUT@
health_timeout=@HEALTH_TIMEOUT@
api_version='@VERSION@'
health_default='@HEALTH@'

# The real defaults. The environment may replace them so that the tests run this very script
# against stand-ins; on the gateway rc.subr(8) starts it through `su -l`, which discards the
# environment (su(1) -l), so these defaults are what runs there.
fetch=${CCVPN_STEER_FETCH:-@FETCH@}
imds=${CCVPN_STEER_IMDS:-@IMDS@}
ec2=${CCVPN_STEER_EC2:-https://ec2.$region.amazonaws.com}
health=${CCVPN_STEER_HEALTH:-$health_default}
PATH=$PATH:/bin:/sbin:/usr/bin:/usr/sbin

# SigV4 signs the Host header: the endpoint's host, its port only when not the default.
host=${ec2#*://}
host=${host%%/*}
case $ec2 in
https://*:443) host=${host%:443} ;;
http://*:80) host=${host%:80} ;;
esac
empty_sha=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

log() {
	# Never given a credential, a presigned URL or a response body.
	logger -t @TAG@ "$*"
}

# Run "$@" for at most $1 seconds: ftp(1) has no overall time limit, and a hung fetch must not
# stop the loop. The watcher's output goes to /dev/null so that $(...) does not wait for it. It
# waits for its sleep with the wait builtin, which a trapped signal interrupts (POSIX wait): a
# pdksh (mksh, tried here) runs a TERM trap only after a foreground child ends, so a plain
# `sleep; kill` watcher would live, and hold $(...), for the whole time limit.
bounded() {
	b_t=$1
	shift
	"$@" &
	b_p=$!
	(
		trap 'kill "$b_z" 2>/dev/null; exit 0' TERM
		sleep "$b_t" &
		b_z=$!
		wait "$b_z" && kill "$b_p" 2>/dev/null
	) >/dev/null 2>&1 &
	b_w=$!
	wait "$b_p"
	b_rc=$?
	kill "$b_w" 2>/dev/null
	return $b_rc
}

# Secrets are handed to other programs only on pipes, through the shell's builtin echo (a
# builtin in OpenBSD's ksh, bin/ksh/c_ksh.c kshbuiltins "echo", and in dash): never as an
# argument, which ps(1) shows. They hold no backslash and no leading '-' (checked on reading).
nl='
'

# One line of printable ASCII on stdin, as lowercase hex bytes.
hex_awk='BEGIN { for (i = 32; i < 127; i++) ord[sprintf("%c", i)] = i }
{ for (i = 1; i <= length($0); i++) printf "%02x", ord[substr($0, i, 1)]; printf "\n" }'

# stdin "KEYHEX": the key zero-padded to the 64-byte SHA-256 block, XOR ipad (0x36), in base64
# lines of 64 characters; a line "-"; the same XOR opad (0x5c) (RFC 2104 HMAC). Both pads in one
# process: a key's pads are made once (the signing key's once per day), then reused.
pad_awk='function hv(c) { return index("0123456789abcdef", c) - 1 }
function xor(a, b,   r, i, bit) {
	r = 0; bit = 1
	for (i = 0; i < 8; i++) { if (int(a / bit) % 2 != int(b / bit) % 2) r += bit; bit *= 2 }
	return r
}
function b64(pad,   a, i, n, x, out) {
	n = 0
	for (i = 1; i < 128; i += 2) {
		v = i < length(k) ? hv(substr(k, i, 1)) * 16 + hv(substr(k, i + 1, 1)) : 0
		b[n++] = xor(v, pad)
	}
	a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"; out = ""
	for (i = 0; i < n; i += 3) {
		x = b[i] * 65536 + (i + 1 < n ? b[i + 1] : 0) * 256 + (i + 2 < n ? b[i + 2] : 0)
		out = out substr(a, int(x / 262144) % 64 + 1, 1) substr(a, int(x / 4096) % 64 + 1, 1)
		out = out (i + 1 < n ? substr(a, int(x / 64) % 64 + 1, 1) : "=")
		out = out (i + 2 < n ? substr(a, x % 64 + 1, 1) : "=")
	}
	for (i = 1; i <= length(out); i += 64) print substr(out, i, 64)
}
{ k = $1; b64(54); print "-"; b64(92) }'

# stdin "name=value" lines, the call's parameters in botocore's order: prints the query string
# (that order), a newline, then the canonical request (SigV4: GET, /, the canonical query string
# sorted by encoded name in byte order (run under LC_ALL=C), the host header, the empty payload's
# hash). Names and values are URI-encoded as SigV4 wants (RFC 3986: only A-Z a-z 0-9 - _ . ~
# stay as they are; the token's + / = and a CIDR's / become %XX). One awk process does what
# four (encode, join, sort, join) did: each exec is about 0.1 s in the user-mode-Linux lab.
request_awk='BEGIN { for (i = 32; i < 127; i++) ord[sprintf("%c", i)] = i
	keep = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~" }
function enc(s,   i, c, out) {
	out = ""
	for (i = 1; i <= length(s); i++) {
		c = substr(s, i, 1)
		out = out (index(keep, c) ? c : sprintf("%%%02X", ord[c]))
	}
	return out
}
{ k = $0; sub(/=.*/, "", k); n++; name[n] = enc(k); pair[n] = name[n] "=" enc(substr($0, length(k) + 2)) }
END {
	for (i = 1; i <= n; i++) { query = query (i > 1 ? "&" : "") pair[i]; o[i] = i }
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && name[o[j - 1]] > name[o[j]]; j--) { t = o[j]; o[j] = o[j - 1]; o[j - 1] = t }
	for (i = 1; i <= n; i++) canon = canon (i > 1 ? "&" : "") pair[o[i]]
	printf "%s\nGET\n/\n%s\nhost:%s\n\nhost\n%s", query, canon, host, payload
}'

# DescribeRouteTables XML (API_DescribeRouteTables: routeTableSet/item/routeTableId and
# routeTableSet/item/routeSet/item/{destinationCidrBlock,networkInterfaceId}) to one line
# "TABLE CIDR OWNER" per steered route (-v tables, cidrs: space-separated), OWNER the route's
# network interface, - (a gateway, a blackhole...) or none (no such route). One process.
routes_awk='BEGIN { RS = "<" }
NR > 1 {
	n = index($0, ">"); if (!n) next
	tag = substr($0, 1, n - 1); text = substr($0, n + 1)
	gsub(/^[ \t\r\n]+|[ \t\r\n]+$/, "", text)
	if (tag ~ /^[?!]/ || tag ~ /\/$/) next
	sub(/[ \t\r\n].*/, "", tag)
	if (tag ~ /^\//) {
		name = substr(tag, 2)
		if (name == "item" && path ~ /\/routeSet\/item$/ && cidr != "")
			owner[table " " cidr] = (eni != "" ? eni : "-")
		path = substr(path, 1, length(path) - length(name) - 1)
		next
	}
	path = path "/" tag
	if (path ~ /\/routeTableSet\/item\/routeTableId$/) table = text
	else if (path ~ /\/routeSet\/item$/) { cidr = ""; eni = "" }
	else if (path ~ /\/routeSet\/item\/destinationCidrBlock$/) cidr = text
	else if (path ~ /\/routeSet\/item\/networkInterfaceId$/) eni = text
}
END {
	nt = split(tables, t, " "); nc = split(cidrs, c, " ")
	for (i = 1; i <= nt; i++)
		for (j = 1; j <= nc; j++) {
			o = owner[t[i] " " c[j]]
			print t[i], c[j], (o == "" ? "none" : o)
		}
}'

# mac IPAD OPAD MESSAGE: sets $mac_out, HMAC-SHA256 as hex, from the key's two pads (pad_awk)
# (RFC 2104: H((K^opad) || H((K^ipad) || m))): the inner digest goes to the outer one as bytes
# (dgst -binary), so the only processes are four openssl; the pads travel on pipes only. The
# message holds no secret. OpenSSL 3 prints "SHA2-256(stdin)= HEX", LibreSSL "HEX" or
# "(stdin)= HEX": the text after the last space is HEX in each.
mac() {
	mac_out=$({ echo "$2" | openssl base64 -d
		{ echo "$1" | openssl base64 -d; printf '%s' "$3"; } | openssl dgst -sha256 -binary
	} | openssl dgst -sha256)
	mac_out=${mac_out##* }
	case $mac_out in *[!0-9a-f]* | '') return 1 ;; esac
	[ ${#mac_out} -eq 64 ]
}

# key_pads KEYHEX: sets $pad_i and $pad_o (pad_awk's two halves).
key_pads() {
	pad_i=$(echo "$1" | awk "$pad_awk") || return 1
	pad_o=${pad_i#*-"$nl"}
	pad_i=${pad_i%"$nl"-*}
}

# derive_key DAY: the SigV4 signing key of DAY (YYYYMMDD) as its two pads ($sign_i, $sign_o):
# kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, day), region), "ec2"), "aws4_request").
# Made once per UTC day and credential change, in a round that makes no claim when it can be.
derive_key() {
	d_k=$(echo "AWS4$sk" | awk "$hex_awk") || return 1
	for d_m in "$1" "$region" ec2 aws4_request; do
		key_pads "$d_k" && mac "$pad_i" "$pad_o" "$d_m" || { d_k=; return 1; }
		d_k=$mac_out
	done
	key_pads "$d_k" || { d_k=; return 1; }
	sign_i=$pad_i sign_o=$pad_o signing_day=$1
	d_k= pad_i= pad_o= mac_out=
	log "signing key of $1 derived"
}

# GET the IMDS path $1 (under latest/meta-data/), the body to standard output. IMDSv1 GETs:
# ftp(1) cannot send IMDSv2's PUT. IMDS is the instance's own link-local service: botocore waits
# 1 s for it (metadata_service_timeout); a hung read must not hold a standby's round for long.
imds_get() {
	bounded "$imds_timeout" $fetch "$imds/latest/meta-data/$1"
}

# The instance's network interface, from IMDS.
own_interface() {
	o_mac=$(imds_get mac) || return 1
	case $o_mac in '' | *[!0-9a-f:]*) return 1 ;; esac
	eni=$(imds_get "network/interfaces/macs/$o_mac/interface-id") || return 1
	case $eni in eni-*) ;; *) return 1 ;; esac
	case $eni in *[!0-9a-z-]*) return 1 ;; esac
}

# The role's credentials document (JSON) on stdin: one line "xKEYID xSECRET xTOKEN" (each field's
# first string value, x-prefixed so that an empty one keeps its place). One process, not six.
cred_awk='function field(name,   s) {
	if (name in v || !match($0, "\"" name "\"[ \t]*:[ \t]*\"[^\"]*\"")) return
	s = substr($0, RSTART, RLENGTH); sub(/^"[^"]*"[ \t]*:[ \t]*"/, "", s); sub(/"$/, "", s)
	v[name] = s
}
{ field("AccessKeyId"); field("SecretAccessKey"); field("Token") }
END { print "x" v["AccessKeyId"], "x" v["SecretAccessKey"], "x" v["Token"] }'

# The instance role's temporary credentials, from IMDS. The role's name is asked once and kept
# (asked again only after its credentials could not be read). A new secret key drops the
# signing key, which is made from it; the same secret keeps it.
load_credentials() {
	if [ -z "$c_role" ]; then
		c_role=$(imds_get iam/security-credentials/) || {
			c_role=; log "cannot read the instance role from IMDS"; return 1; }
		c_role=${c_role%%"$nl"*}
		case $c_role in '' | *[!A-Za-z0-9+=,.@_-]*)
			c_role=; log "IMDS names no usable instance role"; return 1 ;; esac
	fi
	c_json=$(imds_get "iam/security-credentials/$c_role") || {
		log "cannot read the credentials of role $c_role from IMDS"; c_role=; return 1; }
	c_sk=$(echo "$c_json" | awk "$cred_awk")
	c_json=
	set -- $c_sk
	c_ak=${1#x} c_sk=${2#x} c_tk=${3#x}
	set --
	case $c_ak in '' | *[!A-Z0-9]*) log "IMDS gave no usable access key id"; c_sk=; return 1 ;; esac
	case $c_sk in '' | -* | *[!A-Za-z0-9+/=]*) log "IMDS gave no usable secret key"; c_sk=; return 1 ;; esac
	case $c_tk in *[!A-Za-z0-9+/=]*) log "IMDS gave an unusable session token"; c_sk=; return 1 ;; esac
	# A quoted pattern matches literally; case is part of the shell (no process, no argv).
	case $c_sk in "$sk") ;; *) signing_day= sign_i= sign_o= ;; esac
	ak=$c_ak sk=$c_sk tk=$c_tk c_sk=
	have_credentials=yes
	credentials_loop=$loops
	need_credentials=no
}

# Keep the credentials and the signing key ready, at the end of every round, so that a claim
# (a standby's takeover, a primary's fail-back) needs no IMDS read and no key derivation, even
# after a long idle stretch (in the user-mode-Linux lab a standby idle for 30 rounds spent 2-8 s of
# its takeover on them, lab/README.md). The credentials are read again every @REFRESH_S@ s: AWS makes new role
# credentials available "at least five minutes before the expiration of the old credentials"
# (EC2 user guide, IAM roles for EC2), so what is kept has minutes of validity left. If a read
# fails, what is kept is still used (it is still valid) and the read is tried again in
# @RETRY_S@ s; after a rejected call (need_credentials) the next call waits for a new read.
# The signing key is made for the current UTC day when the credentials are new, and after
# midnight: date(1) runs with each credential read, and every round from 23:58 UTC on.
keep_fresh() {
	k_day=no
	if [ "$need_credentials" = yes ] || [ $((loops - credentials_loop)) -ge "$refresh_loops" ]; then
		k_day=yes
		load_credentials || credentials_loop=$((loops - refresh_loops + retry_loops))
	fi
	[ "$have_credentials" = yes ] || return 0
	[ -n "$signing_day" ] || k_day=yes
	case $clock in 235[89]*) k_day=yes ;; esac
	[ "$k_day" = yes ] || return 0
	k_date=$(date -u +%Y%m%dT%H%M%SZ) || return 0
	clock=${k_date#*T}
	k_date=${k_date%%T*}
	[ "$k_date" = "$signing_day" ] || derive_key "$k_date" || log "cannot derive the signing key"
}

# presign NAME=VALUE...: sets $url, the presigned GET URL of that EC2 Query API call
# (query-string SigV4, parameters in botocore's order: the operation's, then X-Amz-*).
# Processes: date, one awk (query, canonical request), openssl for its hash, four openssl for
# the signature (mac); the signing key is normally ready (keep_fresh).
presign() {
	p_date=$(date -u +%Y%m%dT%H%M%SZ) || return 1
	clock=${p_date#*T}
	p_day=${p_date%%T*}
	p_scope=$p_day/$region/ec2/aws4_request
	[ "$p_day" = "$signing_day" ] || derive_key "$p_day" || return 1
	p_out=$({
		for p_kv in "$@" X-Amz-Algorithm=AWS4-HMAC-SHA256 "X-Amz-Credential=$ak/$p_scope" \
			"X-Amz-Date=$p_date" "X-Amz-Expires=$expires" X-Amz-SignedHeaders=host; do
			echo "$p_kv"
		done
		[ -z "$tk" ] || echo "X-Amz-Security-Token=$tk"
	} | LC_ALL=C awk -v host="$host" -v payload="$empty_sha" "$request_awk") || return 1
	p_query=${p_out%%"$nl"*}
	p_creq=${p_out#*"$nl"}
	p_hash=$(printf '%s' "$p_creq" | openssl dgst -sha256) || return 1
	p_hash=${p_hash##* }
	case $p_hash in *[!0-9a-f]* | '') return 1 ;; esac
	mac "$sign_i" "$sign_o" "AWS4-HMAC-SHA256$nl$p_date$nl$p_scope$nl$p_hash" || return 1
	url="$ec2/?$p_query&X-Amz-Signature=$mac_out"
}

# call NAME=VALUE...: the response body in $work/body; logs and fails on any error.
call() {
	c_action=${1#Action=}
	if ! presign "$@"; then
		log "$c_action: cannot sign the request"
		need_credentials=yes
		return 1
	fi
	api_calls=$((api_calls + 1))
	if bounded "$api_timeout" $fetch "$url" >"$work/body" 2>"$work/err"; then
		return 0
	fi
	# The fetch's own words, with any query string (it holds the session token) cut out.
	log "$c_action failed: $(sed -e '1!d' -e 's/?[^ ]*/?.../g' "$work/err")"
	need_credentials=yes
	return 1
}

# One round of steering: claim every route this gateway should hold and does not, as this
# round's DescribeRouteTables shows it. "steer takeover" (the standby, in the round its partner's
# probe failed for the misses-th time) claims every route without describing first: its
# partner held them (that is why it probed it), and a ReplaceRoute of a route it already holds
# changes nothing. The one DescribeRouteTables it skips is a signed call and a round trip on the
# takeover's path. It uses CreateRoute where its last DescribeRouteTables found no route; had a
# route gone missing since, ReplaceRoute fails, and the next round describes and creates it.
steer() {
	if [ "$need_credentials" = yes ]; then
		load_credentials || return 1
	fi
	if [ "$1" = takeover ]; then
		s_list=$view s_how="not described first, last seen"
		if [ -z "$s_list" ]; then
			for s_t in $tables; do
				for s_c in $cidrs; do s_list="$s_list $s_t $s_c unknown"; done
			done
		fi
	else
		s_args=Action=DescribeRouteTables
		s_i=0
		for s_t in $tables; do
			s_i=$((s_i + 1))
			s_args="$s_args RouteTableId.$s_i=$s_t"
		done
		call $s_args "Version=$api_version" || return 1
		view=$(awk -v tables="$tables" -v cidrs="$cidrs" "$routes_awk" "$work/body") || return 1
		s_list=$view s_how=was
	fi
	set -- $s_list
	while [ $# -ge 3 ]; do
		s_t=$1 s_c=$2 s_owner=$3
		shift 3
		[ "$s_owner" = "$eni" ] && [ "$s_how" = was ] && continue
		if [ "$s_owner" = none ]; then s_do=CreateRoute; else s_do=ReplaceRoute; fi
		s_ok=no
		if call "Action=$s_do" "DestinationCidrBlock=$s_c" "NetworkInterfaceId=$eni" \
			"RouteTableId=$s_t" "Version=$api_version"; then
			# read(1) is the shell's own: no grep process on the claim's path
			while IFS= read -r s_line || [ -n "$s_line" ]; do
				case $s_line in *'<return>true</return>'*) s_ok=yes ;; esac
			done <"$work/body"
		fi
		if [ "$s_ok" = yes ]; then
			log "$s_do $s_c in $s_t to $eni ($s_how $s_owner): $role, $why"
		elif [ -s "$work/body" ]; then
			log "$s_do $s_c in $s_t was not accepted"
		fi
	done
}

main() {
	umask 077
	work=$(mktemp -d /tmp/ccvpn-steer.XXXXXXXXXX) || exit 1
	trap 'rm -rf "$work"' EXIT
	trap 'log "stopping"; exit 0' TERM INT HUP
	log "starting: $role for $tables, networks $cidrs, every $interval s"
	loops=0 api_calls=0 need_credentials=yes have_credentials=no credentials_loop=0
	signing_day= sign_i= sign_o= clock= c_role= ak= sk= tk= view=
	until own_interface; do
		log "cannot read this instance's network interface from IMDS; trying again"
		sleep "$interval"
	done
	log "this gateway's network interface is $eni"
	healthy=unknown misses=0
	while :; do
		loops=$((loops + 1))
		if bounded "$health_timeout" sh -c "$health" >/dev/null 2>&1; then now=yes; else now=no; fi
		if [ "$now" != "$healthy" ]; then
			if [ "$now" = yes ]; then
				log "healthy: the BGP session through the tunnel is Established"
			else
				log "unhealthy: the BGP session through the tunnel is not Established; claiming nothing"
			fi
			healthy=$now
		fi
		go=no
		how=
		why="healthy"
		if [ "$role" = standby ]; then
			if bounded "$probe_timeout" $fetch "$partner_url" >/dev/null 2>&1; then
				[ "$misses" -ge "$misses_max" ] && log "the partner answers its probe again"
				misses=0
			else
				misses=$((misses + 1))
				[ "$misses" -eq "$misses_max" ] &&
					log "the partner's probe failed $misses times in a row: taking over when healthy"
			fi
			[ "$misses" -ge "$misses_max" ] && go=yes
			[ "$misses" -eq "$misses_max" ] && how=takeover
			why="healthy, the partner's probe failed $misses times"
		else
			go=yes
		fi
		[ "$healthy" = yes ] && [ "$go" = yes ] && steer $how
		keep_fresh
		sleep "$interval"
	done
}

main "$@" </dev/null
"""


def render_steer_script(
    steering: RouteTableSteering, bgp_peer_private_ip: str, probe_path: str = f"/{DEFAULT_PROBE_FILE}"
) -> str:
    """The whole steering script (:data:`STEER_SCRIPT_PATH`) of one AWS HA gateway whose BGP
    session runs to ``bgp_peer_private_ip`` (the other cloud's gateway of its pair);
    ``probe_path`` is what the partner's responder serves (``openbsd.probe.probe_path``)."""
    _check(steering, bgp_peer_private_ip)
    if not re.fullmatch(r"/[A-Za-z0-9_][A-Za-z0-9._/-]*", probe_path):
        raise ValueError(f"probe_path {probe_path!r} must be an absolute path such as /up")
    interval = _seconds(steering.interval)
    values = {
        "REGION": steering.region,
        "TABLES": " ".join(steering.route_table_ids),
        "CIDRS": " ".join(str(ipaddress.IPv4Network(c)) for c in steering.destination_cidrs),
        "ROLE": "standby" if steering.standby else "primary",
        "PROBE_URL": f"http://{steering.partner_private_ip}:{steering.probe_port}{probe_path}",
        "INTERVAL": interval,
        "MISSES": str(steering.misses),
        "REFRESH_LOOPS": str(max(1, math.ceil(CREDENTIAL_REFRESH_S / float(interval)))),
        "RETRY_LOOPS": str(max(1, math.ceil(CREDENTIAL_RETRY_S / float(interval)))),
        "REFRESH_S": str(CREDENTIAL_REFRESH_S),
        "RETRY_S": str(CREDENTIAL_RETRY_S),
        "IMDS_TIMEOUT": str(IMDS_TIMEOUT),
        "EXPIRES": str(URL_EXPIRES),
        "API_TIMEOUT": str(API_TIMEOUT),
        "PROBE_TIMEOUT": str(PROBE_TIMEOUT),
        "HEALTH_TIMEOUT": str(HEALTH_TIMEOUT),
        "VERSION": EC2_API_VERSION,
        "HEALTH": bgp_established_command(bgp_peer_private_ip),
        "FETCH": DEFAULT_FETCH,
        "IMDS": DEFAULT_IMDS,
        "DAEMON": STEER_DAEMON,
        "TAG": STEER_LOG_TAG,
    }
    text = _SCRIPT
    for name, value in values.items():
        if "'" in value:
            raise ValueError(f"{name} holds a quote")
        text = text.replace(f"@{name}@", value)
    leftover = re.search(r"@[A-Z_]+@", text)
    if leftover:
        raise AssertionError(f"unrendered placeholder {leftover.group()}")
    return text


def render_steer_rc() -> str:
    """``/etc/rc.d/ccvpn_steer`` (rc.d(8), rc.subr(8)): the script runs in the foreground, so
    ``rc_bg=YES`` puts it in the background; it has nothing to reload (``rc_reload=NO``). It runs
    as ``/bin/sh SCRIPT`` (its #! line), so pgrep(1) must look for that command line: rc.subr's
    default ``pexp`` is the daemon path alone, and rc_check matches the whole line (``pgrep -xf``)."""
    return "\n".join(
        [
            "#!/bin/ksh",
            "# Rendered by cross-cloud-vpn; edits are overwritten on the next `pulumi up`.",
            "# The route-table steering loop of an AWS HA gateway (openbsd/steer.py).",
            "",
            f'daemon="{STEER_SCRIPT_PATH}"',
            "",
            ". /etc/rc.d/rc.subr",
            "",
            'pexp="/bin/sh ${daemon}${daemon_flags:+ ${daemon_flags}}"',
            "rc_bg=YES",
            "rc_reload=NO",
            "",
            "rc_cmd $1",
            "",
        ]
    )
