"""pf.conf, asserted rule by rule: pf cannot run on Linux, so its structure is pinned here."""

from __future__ import annotations

import re

import pytest

from cross_cloud_vpn.openbsd import PfGateway, render_pf_conf

GW = PfGateway(
    private_ip="10.10.0.10",
    peer_public_ip="203.0.113.20",
    local_cidrs=["10.10.1.0/24", "10.10.2.0/24"],
    remote_cidrs=["10.20.1.0/24", "10.20.2.0/24", "10.20.3.0/24"],
    admin_cidrs=["192.0.2.0/24"],
)


@pytest.fixture(scope="module")
def rules() -> list[str]:
    text = render_pf_conf(GW)
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _passes(rules: list[str]) -> list[str]:
    return [r for r in rules if r.startswith("pass")]


def test_default_is_block_before_any_pass(rules: list[str]) -> None:
    first_filter = next(r for r in rules if r.split()[0] in ("block", "pass"))
    assert first_filter == "block log all"


def test_macros_and_tables_hold_the_configured_addresses(rules: list[str]) -> None:
    assert 'gw = "10.10.0.10"' in rules and 'peer = "203.0.113.20"' in rules
    assert "table <local_nets> const { 10.10.1.0/24 10.10.2.0/24 }" in rules
    assert "table <remote_nets> const { 10.20.1.0/24 10.20.2.0/24 10.20.3.0/24 }" in rules
    assert "table <admin_nets> const { 192.0.2.0/24 }" in rules


def test_ike_and_nat_t_pass_in_only_from_the_peer_and_raw_esp_not_at_all(rules: list[str]) -> None:
    ike = [r for r in _passes(rules) if "isakmp" in r or "esp" in r.split()]
    assert ike == ["pass in on egress inet proto udp from $peer to $gw port { isakmp ipsec-nat-t }"]
    text = render_pf_conf(GW)
    assert "raw ESP" in text and "NAT-T" in text, "pf.conf must say why there is no proto esp rule"


def test_no_pass_out_rule_that_the_gateways_own_rule_already_covers(rules: list[str]) -> None:
    own = "pass out on egress inet from $gw"
    assert own in rules
    redundant = [r for r in _passes(rules) if r.startswith("pass out on egress") and "from $gw " in f"{r} "
                 and r != own]
    assert redundant == []


def test_states_are_bound_to_their_interface_so_enc0_states_never_pass_egress(rules: list[str]) -> None:
    """pf.conf(5): states float by default; pf.c pf_find_state() matches a pfi_all state on any
    interface. Bound, the state of `pass out on enc0` cannot carry that flow out on egress."""
    assert "set state-policy if-bound" in rules
    first_match = next(i for i, r in enumerate(rules) if r.startswith("match"))
    assert rules.index("set state-policy if-bound") < first_match, "options come before rules"
    assert not any("floating" in r for r in rules)


def test_ssh_passes_only_from_admin_networks(rules: list[str]) -> None:
    ssh = [r for r in rules if "ssh" in r.split()]
    assert ssh == ["pass in on egress inet proto tcp from <admin_nets> to $gw port ssh"]


def test_no_inbound_pass_from_any(rules: list[str]) -> None:
    for rule in _passes(rules):
        if " in " in f" {rule} ":
            assert " from " in rule and "from any" not in rule, rule


def test_traffic_to_remote_networks_never_leaves_egress_in_the_clear(rules: list[str]) -> None:
    guard = "block out log quick on egress inet to <remote_nets>"
    assert guard in rules
    first_pass = next(i for i, r in enumerate(rules) if r.startswith("pass"))
    assert rules.index(guard) < first_pass, "the quick block must precede every pass"
    for rule in _passes(rules):
        if rule.startswith("pass out on egress"):
            assert "to <remote_nets>" not in rule, rule


def test_workload_traffic_passes_only_through_enc0(rules: list[str]) -> None:
    assert "pass out on enc0 inet from <local_nets> to <remote_nets>" in rules
    assert "pass in on enc0 inet from <remote_nets> to <local_nets>" in rules
    assert "pass in on egress inet from <local_nets> to <remote_nets>" in rules
    assert "pass out on egress inet from <remote_nets> to <local_nets>" in rules


def test_tcp_mss_clamped_on_enc0(rules: list[str]) -> None:
    assert any(re.fullmatch(r"match on enc0 all scrub \(max-mss 1350\)", r) for r in rules)


def test_loopback_skipped_and_drops_silent(rules: list[str]) -> None:
    assert "set skip on lo" in rules and "set block-policy drop" in rules


@pytest.mark.parametrize("field", ["private_ip", "peer_public_ip"])
def test_pf_refuses_an_address_that_is_not_ipv4(field: str) -> None:
    bad = PfGateway(**{**GW.__dict__, field: "not-an-ip"})
    with pytest.raises(ValueError):
        render_pf_conf(bad)
