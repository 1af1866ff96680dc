# cross-cloud-vpn bootstrap: runs as root (doas -n /bin/sh -s), read from stdin.
# Everything sits in main() so the shell has read the whole script before any
# command runs: nothing it starts can swallow the rest of stdin.
main() {
set -eu
umask 077
stage=$(mktemp -d /tmp/ccvpn.XXXXXXXXXX)
trap 'rm -rf "$stage"' EXIT
changed=""
restart_iked=no
# file /etc/iked.conf 0600
cat > "$stage/1" <<'CCVPN_END_OF_FILE'
# Rendered by cross-cloud-vpn; edits are overwritten on the next `pulumi up`.
# local is this host's private address: the cloud maps the public one 1:1 onto it.
# This side initiates (active); the peer may initiate too.
# One IKE SA per peer: a restart leaves no stale SA behind.
set enforcesingleikesa
set dpd_check_interval 30

ikev2 "aws-to-azure" active esp \
	from 10.10.1.0/24 to 10.20.1.0/24 \
	local 10.10.0.10 peer 203.0.113.20 \
	ikesa enc aes-256-gcm prf hmac-sha2-256 group curve25519 \
	childsa enc aes-256-gcm group curve25519 \
	childsa enc aes-256 auth hmac-sha2-512 group curve25519 \
	srcid "198.51.100.10" dstid "203.0.113.20" \
	psk "correct-horse-battery-staple-0123456789"
CCVPN_END_OF_FILE
# file /etc/pf.conf 0600
cat > "$stage/2" <<'CCVPN_END_OF_FILE'
# Rendered by cross-cloud-vpn; edits are overwritten on the next `pulumi up`.
gw = "10.10.0.10"
peer = "203.0.113.20"
table <local_nets> const { 10.10.1.0/24 }
table <remote_nets> const { 10.20.1.0/24 }
table <admin_nets> const { 192.0.2.0/24 }

set skip on lo
set block-policy drop
# A state belongs to the interface that made it. By default states float (pf.conf(5):
# "States can match packets on any interfaces"; pf.c pf_find_state() takes a state
# whose kif is pfi_all on any interface): the state of a flow passed out on enc0 would
# then pass that flow out on egress, in the clear, once iked drops its SAs (restart,
# DPD), past the quick block below. Bound to enc0 it cannot.
set state-policy if-bound
# Tunnelled TCP must fit the 1500-byte cloud path after NAT-T and ESP overhead.
match on enc0 all scrub (max-mss 1350)

block log all

# Without an SA iked installs no flow, and such a packet would leave in the clear.
block out log quick on egress inet to <remote_nets>

# IKE and NAT-T from the peer only. The cloud maps our public IP 1:1 to $gw. No rule
# for raw ESP (proto 50): behind 1:1 NAT iked detects the NAT (NAT-D payloads) and both
# sides move IKE and ESP to UDP 4500 (NAT-T), so raw ESP never arrives here.
pass in on egress inet proto udp from $peer to $gw port { isakmp ipsec-nat-t }

pass in on egress inet proto tcp from <admin_nets> to $gw port ssh

# Workload traffic the route tables send here goes out only through IPsec (enc0).
pass in on egress inet from <local_nets> to <remote_nets>
pass out on enc0 inet from <local_nets> to <remote_nets>
pass in on enc0 inet from <remote_nets> to <local_nets>
pass out on egress inet from <remote_nets> to <local_nets>

# The gateway's own traffic (IKE and NAT-T to the peer, DNS, NTP, packages, agents).
pass out on egress inet from $gw
CCVPN_END_OF_FILE
# file /etc/hostname.enc0 0640
cat > "$stage/3" <<'CCVPN_END_OF_FILE'
up
CCVPN_END_OF_FILE
# Check every file before any of them replaces a running one.
iked -n -f "$stage/1"
pfctl -nf "$stage/2"
# All checks passed: install what changed, nothing else.
if ! cmp -s "$stage/1" /etc/iked.conf; then
  install -o root -g wheel -m 0600 "$stage/1" /etc/iked.conf
  changed="$changed /etc/iked.conf"
  restart_iked=yes
fi
if ! cmp -s "$stage/2" /etc/pf.conf; then
  pfctl -f "$stage/2"
  install -o root -g wheel -m 0600 "$stage/2" /etc/pf.conf
  changed="$changed /etc/pf.conf (loaded)"
fi
if ! cmp -s "$stage/3" /etc/hostname.enc0; then
  install -o root -g wheel -m 0640 "$stage/3" /etc/hostname.enc0
  changed="$changed /etc/hostname.enc0"
fi
# sysctl net.inet.ip.forwarding=1
grep -qxF 'net.inet.ip.forwarding=1' /etc/sysctl.conf 2>/dev/null || echo 'net.inet.ip.forwarding=1' >> /etc/sysctl.conf
sysctl -q 'net.inet.ip.forwarding=1' >/dev/null
ifconfig enc0 up
pfctl -e 2>/dev/null || true
did="changed:${changed:- nothing}"
rcctl enable iked >/dev/null
if ! rcctl check iked >/dev/null 2>&1; then
  rcctl start iked >/dev/null; did="$did; iked started"
elif [ "$restart_iked" = yes ]; then
  rcctl restart iked >/dev/null; did="$did; iked restarted"
else
  did="$did; iked left running"
fi
echo "cross-cloud-vpn: $did"
}
main </dev/null
