"""The Azure site in HA mode (``ha``): two gateways in two zones behind an internal Standard Load
Balancer, registered by the real Pulumi SDK against the lab cloud.

What each resource gets is pinned here; what Azure does with it (the probe against OpenBSD's
httpd, how fast a gateway leaves the rotation) only a real deployment shows.
"""

from __future__ import annotations

from typing import Any

import pytest

from cross_cloud_vpn.components import AwsSite, AzureSite, AzureSiteArgs, Ikev2TunnelSet, Ikev2TunnelSetArgs
from cross_cloud_vpn.components.azure_site import AzureHaArgs
from cross_cloud_vpn.components.site import ComponentInputError
from cross_cloud_vpn.lab_cloud import Evaluation, Registration, evaluate
from cross_cloud_vpn.openbsd.probe import DEFAULT_PROBE_FILE, ProbeResponder, probe_path, render_httpd_conf
from tests.test_component_checks import aws_args, refused

IMAGE = "/subscriptions/0/resourceGroups/img/providers/Microsoft.Compute/images/obsd"
LB_IP, FIRST_IP, SECOND_IP = "192.168.0.100", "192.168.0.10", "192.168.0.11"
GROUP = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/lib-rg"
LB_ID = f"{GROUP}/providers/Microsoft.Network/loadBalancers/ha-ilb"
VM, NIC, PUBLIC_IP = ("azure-native:compute:VirtualMachine", "azure-native:network:NetworkInterface",
                      "azure-native:network:PublicIPAddress")
RULE, ROUTE = "azure-native:network:SecurityRule", "azure-native:network:Route"
LB = "azure-native:network:LoadBalancer"


def site_args(key: str, ha: dict[str, Any] | None = None, **changes: Any) -> AzureSiteArgs:
    args: dict[str, Any] = dict(
        location="northeurope", resource_group_name="lib-rg", vnet_cidr="192.168.0.0/16",
        gateway_subnet_cidr="192.168.0.0/24", workload_subnet_cidrs=["192.168.10.0/24", "192.168.20.0/24"],
        remote_cidrs=["172.16.10.0/24", "172.16.20.0/24"], admin_cidrs=["198.51.100.7/32"],
        ssh_public_key=key, image_id=IMAGE, gateway_private_ip=FIRST_IP,
    )
    if ha is not None:
        args["ha"] = AzureHaArgs(**ha)  # type: ignore[typeddict-item]
    args.update(changes)
    return AzureSiteArgs(**{k: v for k, v in args.items() if v is not None})  # type: ignore[typeddict-item]


def ha(**changes: Any) -> dict[str, Any]:
    return {"second_gateway_private_ip": SECOND_IP, "load_balancer_private_ip": LB_IP, **changes}


def _plain(endpoint: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in endpoint.items() if k != "azure_provider"}


def run_site(key: str, ha_args: dict[str, Any] | None = None, previous: Evaluation | None = None,
             prefix: str | None = None, **changes: Any) -> Evaluation:
    def program() -> dict[str, Any]:
        site = AzureSite("ha", site_args(key, ha_args, **changes))
        return {
            "endpoints": [_plain(dict(e)) for e in site.endpoints(prefix)],
            "public_ips": site.gateway_public_ips, "private_ips": site.gateway_private_ips,
            "vm_ids": site.vm_ids, "nsgs": site.gateway_nsg_names, "lb_ip": site.load_balancer_private_ip,
            "public_ip": site.public_ip, "vm_id": site.vm_id,
        }

    return evaluate(program, {}, set(), previous=previous)


@pytest.fixture(scope="module")
def key(ssh_keypair: tuple[str, str]) -> str:
    return ssh_keypair[0]


@pytest.fixture(scope="module")
def two(key: str) -> Evaluation:
    return run_site(key, ha())


def _one(ev: Evaluation, typ: str, name: str) -> Registration:
    found = [r for r in ev.by_type(typ) if r.name == name]
    assert len(found) == 1, f"{name}: {[r.name for r in ev.by_type(typ)]}"
    return found[0]


def _waits_for(r: Registration, other: Registration) -> bool:
    return other.urn in r.dependencies or any(other.urn in urns for urns in r.property_dependencies.values())


def _rule_refs(lb: Registration) -> dict[str, str]:
    rule = lb.inputs["loadBalancingRules"][0]
    return {k: rule[k]["id"] for k in ("frontendIPConfiguration", "backendAddressPool", "probe")}


# --- the two gateways -----------------------------------------------------------------------------

def test_two_gateway_vms_in_zones_one_and_two_keep_the_single_names_and_add_dash_two(two: Evaluation) -> None:
    assert sorted(r.name for r in two.by_type(VM)) == ["ha-gateway", "ha-gateway-2"]
    for name, zone in (("ha-gateway", "1"), ("ha-gateway-2", "2")):
        vm = _one(two, VM, name)
        assert vm.inputs["zones"] == [zone], vm.urn
        # Azure refuses to move a VM to another zone: a new zone replaces it.
        assert "zones" in vm.replace_on_changes and vm.delete_before_replace, vm.urn
    assert two.outputs["vm_ids"] == [_one(two, VM, "ha-gateway").id, _one(two, VM, "ha-gateway-2").id]
    assert two.outputs["vm_id"] == two.outputs["vm_ids"][0]


def test_each_gateway_has_a_static_standard_public_ip_in_its_own_zone(two: Evaluation) -> None:
    for name, zone in (("ha-gateway-ip", "1"), ("ha-gateway-ip-2", "2")):
        ip = _one(two, PUBLIC_IP, name)
        assert ip.inputs["sku"] == {"name": "Standard", "tier": "Regional"}, ip.urn
        assert ip.inputs["publicIPAllocationMethod"] == "Static", ip.urn
        assert ip.inputs["zones"] == [zone], ip.urn
        assert "zones" in ip.replace_on_changes, ip.urn
    nic = _one(two, NIC, "ha-gateway-nic-2")
    second_ip = _one(two, PUBLIC_IP, "ha-gateway-ip-2")
    assert nic.inputs["ipConfigurations"][0]["publicIPAddress"]["id"] == second_ip.id
    assert two.outputs["public_ips"] == [_one(two, PUBLIC_IP, n).state["ipAddress"]
                                         for n in ("ha-gateway-ip", "ha-gateway-ip-2")]
    assert two.outputs["public_ip"] == two.outputs["public_ips"][0]


def test_both_nics_have_their_fixed_ip_and_join_the_balancers_pool_once_it_exists(two: Evaluation) -> None:
    lb = _one(two, LB, "ha-ilb")
    pool = _rule_refs(lb)["backendAddressPool"]
    for name, ip in (("ha-gateway-nic", FIRST_IP), ("ha-gateway-nic-2", SECOND_IP)):
        nic = _one(two, NIC, name)
        config = nic.inputs["ipConfigurations"][0]
        assert (config["privateIPAddress"], config["privateIPAllocationMethod"]) == (ip, "Static"), nic.urn
        assert config["loadBalancerBackendAddressPools"] == [{"id": pool}], nic.urn
        assert nic.inputs["enableIPForwarding"] is True, nic.urn
        assert _waits_for(nic, lb), f"{nic.urn} is written before the balancer"
    assert two.outputs["private_ips"] == [FIRST_IP, SECOND_IP]


# --- the load balancer ----------------------------------------------------------------------------

def test_balancer_is_internal_standard_with_a_static_frontend_in_the_gateway_subnet(two: Evaluation) -> None:
    lb = _one(two, LB, "ha-ilb")
    assert lb.inputs["sku"]["name"] == "Standard", lb.urn
    [front] = lb.inputs["frontendIPConfigurations"]
    assert front["subnet"]["id"] == _one(two, "azure-native:network:Subnet", "ha-gateway").id, lb.urn
    assert (front["privateIPAddress"], front["privateIPAllocationMethod"]) == (LB_IP, "Static"), lb.urn
    assert "publicIPAddress" not in front, f"{lb.urn} must be internal"
    assert two.outputs["lb_ip"] == LB_IP


def test_one_ha_ports_rule_without_floating_ip_behind_the_responders_http_probe(two: Evaluation) -> None:
    lb = _one(two, LB, "ha-ilb")
    [rule] = lb.inputs["loadBalancingRules"]
    assert (rule["protocol"], rule["frontendPort"], rule["backendPort"]) == ("All", 0, 0), lb.urn
    assert rule["enableFloatingIP"] is False, lb.urn
    [probe] = lb.inputs["probes"]
    assert probe["protocol"] == "Http" and probe["requestPath"] == f"/{DEFAULT_PROBE_FILE}" == "/up", lb.urn
    assert (probe["port"], probe["intervalInSeconds"], probe["probeThreshold"]) == (8080, 5, 1), lb.urn


def test_the_rule_names_the_balancers_own_frontend_pool_and_probe_by_their_azure_ids(two: Evaluation) -> None:
    # The ids exist only once the balancer does: they are built from its group and fixed name,
    # the form Azure gives them.
    lb = _one(two, LB, "ha-ilb")
    assert lb.inputs["loadBalancerName"] == "ha-ilb"
    names = {"frontendIPConfiguration": lb.inputs["frontendIPConfigurations"][0]["name"],
             "backendAddressPool": lb.inputs["backendAddressPools"][0]["name"],
             "probe": lb.inputs["probes"][0]["name"]}
    kinds = {"frontendIPConfiguration": "frontendIPConfigurations",
             "backendAddressPool": "backendAddressPools", "probe": "probes"}
    assert _rule_refs(lb) == {k: f"{LB_ID}/{kinds[k]}/{names[k]}" for k in kinds}


def test_probe_settings_and_whole_numbers_from_other_languages_are_taken(key: str) -> None:
    ev = run_site(key, ha(probe_port=9000.0, probe_interval_seconds=10, probe_threshold=2.0, bgp_as=64600,
                          zones=["3", "1"]))
    probe = _one(ev, LB, "ha-ilb").inputs["probes"][0]
    assert (probe["port"], probe["intervalInSeconds"], probe["probeThreshold"]) == (9000, 10, 2)
    assert {_one(ev, RULE, n).inputs["destinationPortRange"] for n in ("ha-probe", "ha-probe-2")} == {"9000"}
    assert [e["ha"] for e in ev.outputs["endpoints"]] == [
        {"bgp_as": 64600, "standby": False, "probe_port": 9000},
        {"bgp_as": 64600, "standby": True, "probe_port": 9000},
    ]
    assert [_one(ev, VM, n).inputs["zones"] for n in ("ha-gateway", "ha-gateway-2")] == [["3"], ["1"]]


# --- routes and NSGs ------------------------------------------------------------------------------

def test_routes_to_the_remote_networks_go_to_the_balancer_never_to_a_gateway(two: Evaluation) -> None:
    routes = two.by_type(ROUTE)
    assert sorted(r.inputs["addressPrefix"] for r in routes) == ["172.16.10.0/24", "172.16.20.0/24"]
    lb = _one(two, LB, "ha-ilb")
    for route in routes:
        assert route.inputs["nextHopType"] == "VirtualAppliance", route.urn
        assert route.inputs["nextHopIpAddress"] == LB_IP, route.urn
        assert route.inputs["nextHopIpAddress"] not in (FIRST_IP, SECOND_IP), route.urn
        assert _waits_for(route, lb), f"{route.urn} points at a balancer that does not exist yet"
    first, second = sorted(routes, key=lambda r: r.inputs["addressPrefix"])
    assert _waits_for(second, first), "one write at a time per route table"


def test_each_gateway_has_its_own_nsg_written_in_order_with_the_probe_allowed_from_the_lb_tag(
    two: Evaluation,
) -> None:
    for suffix in ("", "-2"):
        nsg = _one(two, "azure-native:network:NetworkSecurityGroup", f"ha-gateway-nsg{suffix}")
        ssh, forward, probe = (_one(two, RULE, f"ha-{kind}{suffix}") for kind in ("ssh", "forward", "probe"))
        for rule in (ssh, forward, probe):
            assert rule.inputs["networkSecurityGroupName"] == nsg.state["name"], rule.urn
        assert _waits_for(forward, ssh) and _waits_for(probe, forward), "one write at a time per NSG"
        # A service tag goes in sourceAddressPrefix, never in the list (Azure refuses it there).
        assert probe.inputs["sourceAddressPrefix"] == "AzureLoadBalancer", probe.urn
        assert "sourceAddressPrefixes" not in probe.inputs, probe.urn
        assert (probe.inputs["protocol"], probe.inputs["destinationPortRange"]) == ("Tcp", "8080"), probe.urn
        assert probe.inputs["access"] == "Allow" and probe.inputs["priority"] < 200, probe.urn
        vm = _one(two, VM, f"ha-gateway{suffix}")
        assert _waits_for(vm, probe), f"{vm.urn}: the pair writes its peer rules after the VM"
        nic = _one(two, NIC, f"ha-gateway-nic{suffix}")
        assert nic.inputs["networkSecurityGroup"]["id"] == nsg.id, nic.urn
    # Nothing in either NSG denies anything (Azure's AllowAzureLoadBalancerInBound stays reachable).
    assert {r.inputs["access"] for r in two.by_type(RULE)} == {"Allow"}
    assert two.outputs["nsgs"] == [_one(two, "azure-native:network:NetworkSecurityGroup", n).state["name"]
                                   for n in ("ha-gateway-nsg", "ha-gateway-nsg-2")]


# --- endpoints ------------------------------------------------------------------------------------

def test_endpoints_are_one_per_gateway_with_its_own_addresses_nsg_and_ha_part(two: Evaluation) -> None:
    first, second = two.outputs["endpoints"]
    for endpoint, n, ip, standby in ((first, 1, FIRST_IP, False), (second, 2, SECOND_IP, True)):
        suffix = "" if n == 1 else "-2"
        vm = _one(two, VM, f"ha-gateway{suffix}")
        assert endpoint["site"] == f"azure-{n}"
        assert endpoint["gateway_private_ip"] == ip
        assert endpoint["public_ip"] == two.outputs["public_ips"][n - 1]
        assert endpoint["machine_id"] == endpoint["gateway_ready"] == vm.id
        assert endpoint["azure_network_security_group_name"] == two.outputs["nsgs"][n - 1]
        assert endpoint["azure_resource_group_name"] == "lib-rg"
        assert endpoint["local_cidrs"] == ["192.168.10.0/24", "192.168.20.0/24"]
        assert endpoint["remote_cidrs"] == ["172.16.10.0/24", "172.16.20.0/24"]
        assert endpoint["ha"] == {"bgp_as": 65020, "standby": standby, "probe_port": 8080}


def test_endpoints_site_prefix_renames_both(key: str) -> None:
    ev = run_site(key, ha(), prefix="west")
    assert [e["site"] for e in ev.outputs["endpoints"]] == ["west-1", "west-2"]


def test_endpoint_of_an_ha_site_points_to_endpoints(key: str) -> None:
    def program() -> dict[str, Any]:
        AzureSite("ha", site_args(key, ha())).endpoint()
        return {}

    with pytest.raises(ComponentInputError, match=r"AzureSite 'ha' has two gateways.*site\.endpoints\(\)"):
        evaluate(program, {}, set())


def test_with_an_aws_ha_site_each_tunnel_opens_its_own_gateways_nsg_and_installs_what_the_probe_asks(
    key: str, ssh_keypair: tuple[str, str], iked_public_keys: dict[str, str]
) -> None:
    aws_ips = ["172.16.0.10", "172.16.1.10"]

    def program() -> dict[str, Any]:
        aws = AwsSite("lib-aws", aws_args(key, availability_zone="eu-west-1a", ha={
            "second_gateway_subnet_cidr": "172.16.1.0/24", "second_gateway_private_ip": aws_ips[1],
            "second_availability_zone": "eu-west-1b", "steering": "route-server"}))
        azure = AzureSite("ha", site_args(key, ha(), remote_cidrs=["172.16.10.0/24"],
                                          workload_subnet_cidrs=["192.168.10.0/24"]))
        Ikev2TunnelSet("t", Ikev2TunnelSetArgs(
            left=aws.endpoints(), right=azure.endpoints(), ssh_private_key=ssh_keypair[1],
            admin_cidrs=["198.51.100.7/32"]))
        return {}

    keys = {f"{side}-{n}": iked_public_keys[side] for side in ("aws", "azure") for n in (1, 2)}
    ev = evaluate(program, {}, set(), public_keys=keys)
    probe = _one(ev, LB, "ha-ilb").inputs["probes"][0]
    for n, suffix, ip in ((1, "", FIRST_IP), (2, "-2", SECOND_IP)):
        nsg = _one(ev, "azure-native:network:NetworkSecurityGroup", f"ha-gateway-nsg{suffix}").state["name"]
        # Both pairs write IKE rules at the same priorities: in one NSG Azure would refuse the second.
        ike = [r for r in ev.by_type(RULE) if r.name.startswith(f"t-{n}-") and r.name.endswith("-ike")]
        assert [r.inputs["networkSecurityGroupName"] for r in ike] == [nsg], [r.name for r in ike]
        responder = ProbeResponder(private_ip=ip, bgp_peer_private_ip=aws_ips[n - 1], port=int(probe["port"]))
        assert probe_path(responder) == probe["requestPath"]
        stdin = ev.named(f"t-{n}-azure-{n}-configure").inputs["stdin"]
        assert render_httpd_conf(responder) in stdin, f"azure-{n} does not serve the balancer's probe"


# --- single mode and BYO --------------------------------------------------------------------------

def test_without_ha_endpoints_is_the_one_endpoint_and_nothing_of_ha_is_made(key: str) -> None:
    def program() -> dict[str, Any]:
        site = AzureSite("ha", site_args(key))
        return {"endpoints": [_plain(dict(e)) for e in site.endpoints()],
                "endpoint": _plain(dict(site.endpoint())), "ips": site.gateway_private_ips,
                "vm_ids": site.vm_ids, "lb_ip": site.load_balancer_private_ip}

    ev = evaluate(program, {}, set())
    assert ev.outputs["endpoints"] == [ev.outputs["endpoint"]]
    assert ev.outputs["endpoint"]["site"] == "azure" and "ha" not in ev.outputs["endpoint"]
    assert ev.outputs["ips"] == [FIRST_IP] and ev.outputs["lb_ip"] is None
    assert ev.outputs["vm_ids"] == [_one(ev, VM, "ha-gateway").id]
    assert not ev.by_type(LB)
    assert not [r.name for r in ev.resources if r.name.endswith("-2") or "probe" in r.name]
    assert "zones" not in _one(ev, VM, "ha-gateway").inputs
    assert "zones" not in _one(ev, PUBLIC_IP, "ha-gateway-ip").inputs
    assert {r.inputs["nextHopIpAddress"] for r in ev.by_type(ROUTE)} == {FIRST_IP}


def test_byo_network_ha_puts_the_frontend_in_the_given_subnet_and_routes_every_given_table(key: str) -> None:
    tables = [f"/subscriptions/0/resourceGroups/spokes/providers/Microsoft.Network/routeTables/{t}"
              for t in ("a", "b")]
    subnet = "/subscriptions/0/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/gw"
    ev = run_site(key, ha(), vnet_cidr=None, gateway_subnet_cidr=None, workload_subnet_cidrs=None,
                  vnet_id="/subscriptions/0/vnet", gateway_subnet_id=subnet, workload_route_table_ids=tables,
                  local_cidrs=["192.168.0.0/16"])
    lb = _one(ev, LB, "ha-ilb")
    assert lb.inputs["frontendIPConfigurations"][0]["subnet"]["id"] == subnet
    assert _rule_refs(lb)["probe"] == f"{LB_ID}/probes/tunnel-up"
    routes = ev.by_type(ROUTE)
    assert sorted((r.inputs["routeTableName"], r.inputs["addressPrefix"]) for r in routes) == [
        (t, c) for t in ("a", "b") for c in ("172.16.10.0/24", "172.16.20.0/24")]
    assert {r.inputs["nextHopIpAddress"] for r in routes} == {LB_IP}
    assert {_one(ev, NIC, n).inputs["ipConfigurations"][0]["subnet"]["id"]
            for n in ("ha-gateway-nic", "ha-gateway-nic-2")} == {subnet}
    assert not ev.by_type("azure-native:network:VirtualNetwork")


# --- a second up ----------------------------------------------------------------------------------

def test_second_up_with_nothing_changed_changes_nothing(key: str) -> None:
    first = run_site(key, ha())
    second = run_site(key, ha(), previous=first)
    assert second.changes() == {}
    assert second.outputs == first.outputs


def test_a_new_zone_for_the_second_gateway_replaces_only_its_vm_and_public_ip(key: str) -> None:
    first = run_site(key, ha())
    second = run_site(key, ha(zones=["1", "3"]), previous=first)
    assert second.changes() == {(VM, "ha-gateway-2"): "replace", (PUBLIC_IP, "ha-gateway-ip-2"): "replace",
                                (NIC, "ha-gateway-nic-2"): "update"}


def test_turning_ha_on_replaces_the_first_gateways_vm_and_public_ip_and_keeps_its_nic(key: str) -> None:
    first = run_site(key)
    second = run_site(key, ha(), previous=first)
    changes = second.changes()
    assert changes[(VM, "ha-gateway")] == changes[(PUBLIC_IP, "ha-gateway-ip")] == "replace"
    assert changes[(NIC, "ha-gateway-nic")] == "update"
    assert {k for k, v in changes.items() if v == "delete"} == set()


# --- mistakes -------------------------------------------------------------------------------------

HA_MISTAKES = [
    ("second_ip_outside_the_gateway_subnet", ha(second_gateway_private_ip="192.168.5.11"), {},
     ("AzureSite 'lib'", "'ha.second_gateway_private_ip'", "192.168.5.11", "outside 'gateway_subnet_cidr'")),
    ("lb_ip_not_an_address", ha(load_balancer_private_ip="192.168.0.300"), {},
     ("'ha.load_balancer_private_ip'", "192.168.0.300", "not an IPv4 address")),
    ("lb_ip_is_the_first_gateways", ha(load_balancer_private_ip=FIRST_IP), {},
     ("'ha.load_balancer_private_ip'", FIRST_IP, "the same address as 'gateway_private_ip'")),
    ("second_ip_is_the_first_gateways", ha(second_gateway_private_ip=FIRST_IP), {},
     ("'ha.second_gateway_private_ip'", FIRST_IP, "the same address as 'gateway_private_ip'")),
    ("lb_ip_is_the_second_gateways", ha(load_balancer_private_ip=SECOND_IP), {},
     ("'ha.load_balancer_private_ip'", SECOND_IP, "the same address as 'ha.second_gateway_private_ip'")),
    ("second_ip_missing", {"load_balancer_private_ip": LB_IP}, {},
     ("'ha.second_gateway_private_ip' is missing",)),
    ("first_gateway_ip_unset", ha(), {"gateway_private_ip": None}, ("'ha' needs 'gateway_private_ip'",)),
    ("one_zone", ha(zones=["1"]), {}, ("'ha.zones'", "['1']", "two different availability zones")),
    ("same_zone_twice", ha(zones=["2", "2"]), {}, ("'ha.zones'", "['2', '2']")),
    ("zone_azure_does_not_have", ha(zones=["1", "4"]), {}, ("'ha.zones'", "['1', '4']")),
    ("zones_as_one_string", ha(zones="12"), {}, ("'ha.zones'", "'12'")),
    ("probe_port_is_bgp", ha(probe_port=179), {}, ("'ha.probe_port'", "179", "taken")),
    ("probe_port_out_of_range", ha(probe_port=70000), {}, ("'ha.probe_port'", "70000", "1 to 65535")),
    ("probe_interval_below_azures_minimum", ha(probe_interval_seconds=4), {},
     ("'ha.probe_interval_seconds'", "4", "from 5")),
    ("probe_threshold_zero", ha(probe_threshold=0), {}, ("'ha.probe_threshold'", "0", "from 1")),
    ("probe_threshold_fraction", ha(probe_threshold=1.5), {}, ("'ha.probe_threshold'", "1.5")),
    ("bgp_as_zero", ha(bgp_as=0), {}, ("'ha.bgp_as'", "0", "1 to 4294967295")),
    ("bgp_as_beyond_four_bytes", ha(bgp_as=2**32), {}, ("'ha.bgp_as'", str(2**32))),
]


@pytest.mark.parametrize("preview", [False, True], ids=["update", "preview"])
@pytest.mark.parametrize(("ha_args", "changes", "fragments"),
                         [pytest.param(h, c, f, id=i) for i, h, c, f in HA_MISTAKES])
def test_ha_mistake_fails_at_construction_naming_argument_and_value(
    key: str, ha_args: dict[str, Any], changes: dict[str, Any], fragments: tuple[str, ...], preview: bool
) -> None:
    refused(lambda: {"x": AzureSite("lib", site_args(key, ha_args, **changes)).vm_id}, *fragments,
            preview=preview, component="cross-cloud-vpn:index:AzureSite")


def test_every_ha_problem_is_reported_at_once(key: str) -> None:
    mistakes = ha(probe_port=22, zones=["1"], bgp_as=0)
    cloud = refused(lambda: {"x": AzureSite("lib", site_args(key, mistakes)).vm_id},
                    "'ha.probe_port'", "'ha.zones'", "'ha.bgp_as'")
    assert not [r for r in cloud.registrations if r.custom]
