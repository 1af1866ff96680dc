"""HA mode in the stack config: one switch, documented defaults, every bad HA input refused by key."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from cross_cloud_vpn.stack_config import ConfigProblems, parse_settings

Values = dict[str, str]
P = "cross-cloud-vpn:"


def _merge(key: str, **changes: object) -> Callable[[Values], None]:
    def mutate(values: Values) -> None:
        obj = json.loads(values.get(P + key, "{}"))
        obj.update({k: v for k, v in changes.items() if v is not None})
        for k in [k for k, v in changes.items() if v is None]:
            obj.pop(k, None)
        values[P + key] = json.dumps(obj)

    return mutate


def _ha_on(values: Values) -> None:
    _merge("ha", enabled=True)(values)
    _merge("aws", secondGatewaySubnetCidr="10.10.2.0/24")(values)


def test_ha_is_off_unless_enabled(dev_config: tuple[Values, set[str]]) -> None:
    values, secrets = dev_config
    assert parse_settings(values, secrets).ha is None


def test_ha_enabled_takes_documented_defaults(dev_config: tuple[Values, set[str]]) -> None:
    values, secrets = dev_config
    _ha_on(values)
    ha = parse_settings(values, secrets).ha
    assert ha is not None
    assert ha.aws_steering == "route-tables"
    assert (ha.aws_asn, ha.azure_asn, ha.route_server_asn, ha.probe_port) == (65010, 65020, 65000, 8080)
    assert ha.azure_zones == ("1", "2")
    # Hosts .11 and .12 of azure.gatewaySubnetCidr 10.20.0.0/24 (the first gateway is .10).
    assert (ha.azure_second_gateway_ip, ha.azure_load_balancer_ip) == ("10.20.0.11", "10.20.0.12")
    settings = parse_settings(values, secrets)
    assert settings.aws.network.second_gateway_subnet_cidr == "10.10.2.0/24"


def test_route_server_steering_is_chosen_by_its_key(dev_config: tuple[Values, set[str]]) -> None:
    values, secrets = dev_config
    _ha_on(values)
    _merge("ha", awsSteering="route-server")(values)
    ha = parse_settings(values, secrets).ha
    assert ha is not None and ha.aws_steering == "route-server"


BAD_HA: list[tuple[str, Callable[[Values], None], tuple[str, ...]]] = [
    ("second_subnet_missing", _merge("ha", enabled=True), ("aws.secondGatewaySubnetCidr", "is not set")),
    ("ha_keys_without_enabled", _merge("ha", awsSteering="route-server"), ("ha.awsSteering", "ha.enabled")),
    ("second_subnet_without_enabled", _merge("aws", secondGatewaySubnetCidr="10.10.2.0/24"),
     ("aws.secondGatewaySubnetCidr", "ha.enabled")),
    ("unknown_steering", lambda v: (_ha_on(v), _merge("ha", awsSteering="bgp")(v)),
     ("ha.awsSteering", "'bgp'", "route-tables")),
    ("same_asn", lambda v: (_ha_on(v), _merge("ha", azureAsn=65010)(v)),
     ("ha.awsAsn", "ha.azureAsn", "differ")),
    ("asn_out_of_range", lambda v: (_ha_on(v), _merge("ha", awsAsn=0)(v)), ("ha.awsAsn", "0")),
    ("probe_port_taken", lambda v: (_ha_on(v), _merge("ha", probePort=179)(v)), ("ha.probePort", "179")),
    ("one_zone", lambda v: (_ha_on(v), _merge("ha", azureZones=["1", "1"])(v)), ("ha.azureZones", "'1'")),
    ("second_subnet_overlaps_workload",
     lambda v: (_ha_on(v), _merge("aws", secondGatewaySubnetCidr="10.10.1.0/24")(v)),
     ("aws.secondGatewaySubnetCidr", "10.10.1.0/24")),
    ("second_subnet_outside_vpc",
     lambda v: (_ha_on(v), _merge("aws", secondGatewaySubnetCidr="10.99.2.0/24")(v)),
     ("aws.secondGatewaySubnetCidr", "10.99.2.0/24")),
    ("second_subnet_too_small",
     lambda v: (_ha_on(v), _merge("aws", secondGatewaySubnetCidr="10.10.2.0/29")(v)),
     ("aws.secondGatewaySubnetCidr", "10.10.2.0/29")),
    ("one_aws_zone_named",
     lambda v: (_ha_on(v), _merge("aws", availabilityZone="eu-west-1a")(v)),
     ("aws.availabilityZone", "aws.secondAvailabilityZone")),
    ("same_aws_zone",
     lambda v: (_ha_on(v), _merge("aws", availabilityZone="eu-west-1a",
                                  secondAvailabilityZone="eu-west-1a")(v)),
     ("aws.secondAvailabilityZone", "eu-west-1a", "two zones")),
    ("byo_network", lambda v: (_ha_on(v), _merge("aws", vpcCidr=None, gatewaySubnetCidr=None,
                                                  workloadSubnetCidrs=None, secondGatewaySubnetCidr=None,
                                                  testVm=False, vpcId="vpc-0abc1234",
                                                  gatewaySubnetId="subnet-0abc1234",
                                                  workloadRouteTableIds=["rtb-0abc1234"])(v)),
     ("ha.enabled", "vpcId", "networks the program creates")),
    ("typo_in_ha", lambda v: (_ha_on(v), _merge("ha", probeport=8081)(v)), ("ha.probeport", "ha.probePort")),
]


@pytest.mark.parametrize(("mutate", "fragments"), [pytest.param(m, f, id=i) for i, m, f in BAD_HA])
def test_bad_ha_input_is_refused_naming_key_and_value(
    dev_config: tuple[Values, set[str]], mutate: Callable[[Values], None], fragments: tuple[str, ...]
) -> None:
    values, secrets = dev_config
    mutate(values)
    with pytest.raises(ConfigProblems) as caught:
        parse_settings(values, secrets)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from: {message}"
