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


# HA mode (issue 13): two pairs of gateways; research/ha.md sections 2.3 and 2.5.
HA_GW = PfGateway(**{**GW.__dict__, "bgp_peer_private_ip": "10.20.0.10"})
HA_AZURE_GW = PfGateway(**{**GW.__dict__, "private_ip": "10.20.0.10", "local_cidrs": ["10.20.1.0/24"],
                           "remote_cidrs": ["10.10.1.0/24"], "bgp_peer_private_ip": "10.10.0.10",
                           "probe_port": 8080})
TRANSIT = [
    "pass in on egress inet from <local_nets> to <remote_nets>",
    "pass out on enc0 inet from <local_nets> to <remote_nets>",
    "pass in on enc0 inet from <remote_nets> to <local_nets>",
    "pass out on egress inet from <remote_nets> to <local_nets>",
]


def _rules_of(gw: PfGateway) -> list[str]:
    return [line for line in render_pf_conf(gw).splitlines() if line and not line.startswith("#")]


@pytest.fixture(scope="module", params=["aws", "azure"])
def ha_rules(request: pytest.FixtureRequest) -> list[str]:
    return _rules_of(HA_GW if request.param == "aws" else HA_AZURE_GW)


def test_ha_is_off_by_default_so_the_single_gateway_text_has_no_ha_rule(rules: list[str]) -> None:
    assert GW.bgp_peer_private_ip is None and GW.probe_port is None
    text = "\n".join(rules)
    for ha_only in ("no state", "peer_gw", "179", "lb_probe", "168.63.129.16"):
        assert ha_only not in text, ha_only
    transit = [r for r in _passes(rules) if "<local_nets>" in r or "<remote_nets>" in r]
    assert transit == TRANSIT, "single-gateway transit rules stay stateful, as before"


def test_ha_transit_rules_keep_no_state_so_one_direction_of_a_flow_passes(ha_rules: list[str]) -> None:
    """Each cloud picks a pair per flow; a gateway may see only one direction (research 2.5)."""
    transit = [r for r in ha_rules if "<local_nets>" in r or "<remote_nets>" in r]
    assert [r for r in transit if r.startswith("pass")] == [f"{t} no state" for t in TRANSIT]
    assert not any(r.startswith("pass") and "<remote_nets>" in r and "keep state" in r for r in ha_rules)


def test_ha_traffic_to_remote_networks_still_never_leaves_egress(ha_rules: list[str]) -> None:
    guard = "block out log quick on egress inet to <remote_nets>"
    first_pass = next(i for i, r in enumerate(ha_rules) if r.startswith("pass"))
    assert ha_rules.index(guard) < first_pass
    to_remote = [r for r in ha_rules if r.startswith("pass out") and "to <remote_nets>" in r]
    assert to_remote == ["pass out on enc0 inet from <local_nets> to <remote_nets> no state"]


def test_ha_what_stays_stateful_is_bound_to_its_interface(ha_rules: list[str]) -> None:
    assert "set state-policy if-bound" in ha_rules
    stateless = [r for r in ha_rules if "no state" in r]
    assert len(stateless) == 4, "only the four transit rules may drop state"


def test_ha_bgp_with_the_peer_gateway_passes_only_on_enc0(ha_rules: list[str]) -> None:
    bgp = [r for r in ha_rules if r.startswith("pass") and ("179" in r.split() or "$peer_gw" in r)]
    assert bgp == [
        "pass out on enc0 inet proto tcp from $gw to $peer_gw port 179",
        "pass in on enc0 inet proto tcp from $peer_gw to $gw port 179",
    ]


def test_ha_nothing_for_the_peer_gateway_leaves_egress_in_the_clear(ha_rules: list[str]) -> None:
    """With no SA, the gateway's own `pass out on egress from $gw` would carry BGP in the clear:
    a quick block for the peer gateway's address must come before every pass."""
    guard = "block out log quick on egress inet to $peer_gw"
    assert guard in ha_rules
    first_pass = next(i for i, r in enumerate(ha_rules) if r.startswith("pass"))
    assert ha_rules.index(guard) < first_pass < ha_rules.index("pass out on egress inet from $gw")
    assert not [r for r in ha_rules if r.startswith("pass") and "egress" in r and "$peer_gw" in r]


def test_ha_macros_name_the_peer_gateway() -> None:
    assert 'peer_gw = "10.20.0.10"' in _rules_of(HA_GW)
    assert 'peer_gw = "10.10.0.10"' in _rules_of(HA_AZURE_GW)


def test_ha_azure_gateway_takes_the_load_balancer_probe_only_from_its_source() -> None:
    azure = _rules_of(HA_AZURE_GW)
    assert 'lb_probe = "168.63.129.16"' in azure
    probe = [r for r in azure if "$lb_probe" in r]
    assert probe == ["pass in on egress inet proto tcp from $lb_probe to $gw port 8080"]
    assert not [r for r in _rules_of(HA_GW) if "lb_probe" in r], "an AWS gateway has no probe rule"


def test_ha_comments_say_why_citing_pf_conf_and_the_research() -> None:
    text = render_pf_conf(HA_AZURE_GW)
    for why in ("pf.conf(5) `no state`", "research/ha.md section 2.5", "168.63.129.16", "in the clear"):
        assert why in text, why


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bgp_peer_private_ip": "not-an-ip"}, "not an IPv4 address"),
        ({"bgp_peer_private_ip": "10.10.0.10"}, "own private IP"),
        ({"bgp_peer_private_ip": "10.10.1.5"}, "local_cidrs"),
        ({"probe_port": 0}, "1..65535"),
        ({"probe_port": 65536}, "1..65535"),
        ({"probe_port": 179}, "taken"),
        ({"bgp_peer_private_ip": None, "probe_port": 8080}, "needs bgp_peer_private_ip"),
    ],
)
def test_ha_pf_refuses_bad_ha_inputs(change: dict[str, object], message: str) -> None:
    bad = PfGateway(**{**HA_GW.__dict__, **change})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        render_pf_conf(bad)


def test_probe_from_the_partner_gateway_replaces_the_azure_load_balancers() -> None:
    """AWS route-table steering: the other AWS gateway probes this one (openbsd/steer.py)."""
    pf = render_pf_conf(PfGateway(private_ip="10.10.0.10", peer_public_ip="203.0.113.20",
                                  local_cidrs=["10.10.1.0/24"], remote_cidrs=["10.20.1.0/24"],
                                  admin_cidrs=["192.0.2.0/24"], bgp_peer_private_ip="10.20.0.10",
                                  probe_port=8080, probe_source="10.10.0.11")).splitlines()
    assert 'partner_gw = "10.10.0.11"' in pf
    assert "pass in on egress inet proto tcp from $partner_gw to $gw port 8080" in pf
    assert [line for line in pf if "port 8080" in line] == [
        "pass in on egress inet proto tcp from $partner_gw to $gw port 8080"]
    assert not [line for line in pf if "168.63.129.16" in line or "lb_probe" in line]


@pytest.mark.parametrize(
    ("source", "message"),
    [("10.10.0.300", "not an IPv4"), ("10.10.0.10", "not this gateway"), ("10.20.0.10", "tunnel peer")],
)
def test_probe_source_must_be_another_address(source: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_pf_conf(PfGateway(private_ip="10.10.0.10", peer_public_ip="203.0.113.20",
                                 local_cidrs=["10.10.1.0/24"], remote_cidrs=["10.20.1.0/24"],
                                 admin_cidrs=["192.0.2.0/24"], bgp_peer_private_ip="10.20.0.10",
                                 probe_port=8080, probe_source=source))
