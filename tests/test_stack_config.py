"""The stack config: defaults, and every bad input refused together with its key and value."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from cross_cloud_vpn.stack_config import ConfigProblems, parse_settings
from tests.conftest import PSK

Values = dict[str, str]
#: A 1024-bit RSA public key (ssh-keygen -t rsa -b 1024): Azure takes 2048 bits or more.
SHORT_RSA_KEY = (
    "ssh-rsa "
    "AAAAB3NzaC1yc2EAAAADAQABAAAAgQC419xNFWTzwxpvUeUFIfiHldFr9bsNnrLS+9g6EvijLlNmT1bz02aZpuUcl4"
    "0zUjDCRIQ4Ll2fnaHj4Aq+nMyZRYO42jCzMjcKFovW8IBwRF7RqAf1qG8P1BopGh78kVdTVRE3GfrJ1ay6Lw+WVhA8"
    "FQrBqtyI2pIbQ+w0zPnsRw=="
    " short"
)
P = "cross-cloud-vpn:"


def _set(key: str, **changes: object) -> Callable[[Values], None]:
    """Change fields of the object config key ``key`` (aws, azure, tunnel)."""

    def mutate(values: Values) -> None:
        obj = json.loads(values.get(P + key, "{}"))
        for name, value in changes.items():
            if value is None:
                obj.pop(name, None)
            else:
                obj[name] = value
        values[P + key] = json.dumps(obj)

    return mutate


def _top(key: str, value: str | None) -> Callable[[Values], None]:
    def mutate(values: Values) -> None:
        if value is None:
            values.pop(P + key, None)
        else:
            values[P + key] = value

    return mutate


def _image_file(values: Values) -> None:
    """``imageFile`` instead of the image ids (the checks below do not need the file to exist)."""
    _set("aws", amiOwner=None, amiNameFilter=None)(values)
    _set("azure", imageId=None)(values)
    values[P + "imageFile"] = "images/openbsd-7.6-amd64.raw"


def _tags(count: int) -> Callable[[Values], None]:
    """``count`` tags of the user's own (project and stack come on top)."""
    return _top("tags", json.dumps({f"tag{i}": "x" for i in range(count)}))


# (case id, mutation, secret keys to drop, fragments every one of which the message must hold)
BAD_INPUTS: list[tuple[str, Callable[[Values], None], set[str], tuple[str, ...]]] = [
    ("prefix_over_33", _set("aws", vpcCidr="10.0.0.0/33"), set(), ("aws.vpcCidr", "10.0.0.0/33")),
    ("octet_300", _set("aws", gatewaySubnetCidr="10.0.0.300/24"), set(),
     ("aws.gatewaySubnetCidr", "10.0.0.300/24")),
    ("not_a_cidr", _set("azure", vnetCidr="banana"), set(), ("azure.vnetCidr", "banana")),
    ("host_bits_set", _set("aws", vpcCidr="10.0.1.5/16"), set(),
     ("aws.vpcCidr", "10.0.1.5/16", "10.0.0.0/16")),
    ("sides_overlap", _set("azure", vnetCidr="10.10.0.0/16", gatewaySubnetCidr="10.10.0.0/24",
                           workloadSubnetCidrs=["10.10.1.0/24"]), set(),
     ("aws.vpcCidr", "azure.vnetCidr", "overlaps")),
    ("workload_overlaps_other_side", _set("azure", vnetCidr="10.0.0.0/8",
                                          gatewaySubnetCidr="10.30.0.0/24",
                                          workloadSubnetCidrs=["10.10.1.0/28"]), set(),
     ("aws.workloadSubnetCidrs[0]", "azure.workloadSubnetCidrs[0]", "10.10.1.0/28")),
    ("subnet_outside_vpc", _set("aws", workloadSubnetCidrs=["10.99.1.0/24"]), set(),
     ("aws.workloadSubnetCidrs[0]", "10.99.1.0/24", "outside")),
    ("subnets_overlap", _set("azure", workloadSubnetCidrs=["10.20.0.128/25"]), set(),
     ("azure.gatewaySubnetCidr", "azure.workloadSubnetCidrs[0]", "10.20.0.128/25")),
    ("workloads_overlap", _set("aws", workloadSubnetCidrs=["10.10.1.0/24", "10.10.1.0/25"]), set(),
     ("aws.workloadSubnetCidrs[0]", "aws.workloadSubnetCidrs[1]")),
    ("gateway_subnet_too_small", _set("aws", gatewaySubnetCidr="10.10.0.0/29"), set(),
     ("aws.gatewaySubnetCidr", "10.10.0.0/29", "/28")),
    ("aws_image_missing", _set("aws", amiOwner=None, amiNameFilter=None), set(),
     ("aws.amiId", "aws.amiOwner", "aws.amiNameFilter")),
    ("aws_image_twice", _set("aws", amiId="ami-0123456789abcdef0"), set(),
     ("aws.amiId", "ami-0123456789abcdef0")),
    ("azure_image_missing", _set("azure", imageId=None), set(), ("azure.imageId", "required")),
    ("azure_image_not_an_id", _set("azure", imageId="openbsd"), set(), ("azure.imageId", "'openbsd'")),
    ("ssh_public_key_missing", _top("sshPublicKey", None), set(), ("sshPublicKey", "required")),
    ("ssh_public_key_dsa", _top("sshPublicKey", "ssh-dss AAAAB3NzaC1kc3MAAACBAP test"), set(),
     ("sshPublicKey", "'ssh-dss'", "ssh-ed25519")),
    ("ssh_public_key_rsa_1024_bits", _top("sshPublicKey", SHORT_RSA_KEY), set(),
     ("sshPublicKey", "1024-bit", "2048")),
    ("ssh_private_key_missing", _top("sshPrivateKey", None), set(), ("sshPrivateKey", "required")),
    ("ssh_private_key_plain", lambda v: None, {P + "sshPrivateKey"}, ("sshPrivateKey", "--secret")),
    ("admin_anywhere_without_opt_in", _top("adminCidrs", '["0.0.0.0/0"]'), set(),
     ("adminCidrs[0]", "0.0.0.0/0", "allowSshFromAnywhere")),
    ("admin_cidr_invalid", _top("adminCidrs", '["192.0.2.1/24"]'), set(),
     ("adminCidrs[0]", "192.0.2.1/24")),
    ("psk_mode_without_psk", _set("tunnel", authMode="psk"), set(), ("psk", "required", "--secret")),
    ("psk_not_secret", lambda v: (_set("tunnel", authMode="psk")(v), _top("psk", PSK)(v)), {P + "psk"},
     ("psk", "plain text")),
    ("psk_too_short", lambda v: (_set("tunnel", authMode="psk")(v), _top("psk", "short-psk")(v)),
     set(), ("psk", "9 characters", "20")),
    ("auth_mode_unknown", _set("tunnel", authMode="cert"), set(), ("tunnel.authMode", "'cert'")),
    ("both_passive", _set("tunnel", awsRole="passive", azureRole="passive"), set(),
     ("tunnel.awsRole", "tunnel.azureRole", "passive")),
    ("bad_proposal", _set("tunnel", childProposals=["enc aes-256 auth hmac-sha3"]), set(),
     ("tunnel.childProposals[0]", "hmac-sha3")),
    ("dpd_negative", _set("tunnel", dpdInterval=-5), set(), ("tunnel.dpdInterval", "-5")),
    ("unknown_top_key", _top("adminCidr", '["192.0.2.0/24"]'), set(),
     ("cross-cloud-vpn:adminCidr", "did you mean 'cross-cloud-vpn:adminCidrs'")),
    ("unknown_nested_key", _set("aws", vpcCIDR="10.10.0.0/16"), set(),
     ("cross-cloud-vpn:aws.vpcCIDR", "did you mean 'cross-cloud-vpn:aws.vpcCidr'")),
    ("prefix_invalid", _top("prefix", "Bad_Prefix"), set(), ("prefix", "Bad_Prefix")),
    ("admin_user_invalid", _set("azure", adminUser="Root User"), set(), ("azure.adminUser", "'Root User'")),
    ("resource_group_name_over_90", _set("azure", resourceGroupName="g" * 91), set(),
     ("azure.resourceGroupName", "g" * 91, "91 characters", "at most 90")),
    ("images_resource_group_over_90",
     lambda v: (_image_file(v), _set("azure", resourceGroupName="g" * 84)(v)), set(),
     ("azure.resourceGroupName", "g" * 84, f"'{'g' * 84}-images', 91 characters", "90", "at most 83")),
    ("tags_over_50", _tags(48), set(), ("cross-cloud-vpn:tags", "50 tags", "at most 49")),
    ("tags_over_10_on_the_image_object", lambda v: (_image_file(v), _tags(8)(v)), set(),
     ("cross-cloud-vpn:tags", "10 tags", "S3 object", "at most 9")),
    ("nitro_instance_type", _set("aws", instanceType="t3.small"), set(),
     ("aws.instanceType", "'t3.small'", "ENA", "t2, m4, c4", "aws.imageHasEna")),
    ("nitro_family_named_like_a_xen_one", _set("aws", instanceType="i3en.large"), set(),
     ("aws.instanceType", "'i3en.large'", "'i3en'", "ENA")),
    ("image_has_ena_not_a_bool", _set("aws", imageHasEna="yes"), set(), ("aws.imageHasEna", "'yes'")),
    ("require_up_not_a_bool", _set("tunnel", requireUp="sometimes"), set(),
     ("tunnel.requireUp", "'sometimes'")),
]


@pytest.mark.parametrize(
    ("mutate", "drop_secret", "fragments"),
    [pytest.param(m, d, f, id=i) for i, m, d, f in BAD_INPUTS],
)
def test_bad_input_is_refused_naming_key_and_value(
    dev_config: tuple[Values, set[str]],
    mutate: Callable[[Values], None],
    drop_secret: set[str],
    fragments: tuple[str, ...],
) -> None:
    values, secrets = dev_config
    secrets = (secrets | {P + "psk"}) - drop_secret
    mutate(values)
    with pytest.raises(ConfigProblems) as caught:
        parse_settings(values, secrets)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from: {message}"


def test_every_problem_is_reported_in_one_error(dev_config: tuple[Values, set[str]]) -> None:
    values, secrets = dev_config
    _set("aws", vpcCidr="banana")(values)
    _set("azure", imageId=None)(values)
    _top("adminCidrs", '["0.0.0.0/0"]')(values)
    with pytest.raises(ConfigProblems) as caught:
        parse_settings(values, secrets)
    assert len(caught.value.problems) == 3, caught.value.problems
    assert str(caught.value).startswith("3 problems in the stack config")


def test_dev_stack_parses_with_documented_defaults(dev_config: tuple[Values, set[str]]) -> None:
    values, secrets = dev_config
    settings = parse_settings(values, secrets, stack="dev")
    assert settings.prefix == "ccvpn-dev"
    assert settings.aws.network.gateway_private_ip == "10.10.0.10"
    assert settings.azure.network.gateway_private_ip == "10.20.0.10"
    assert not settings.aws.network.brings_own and not settings.azure.network.brings_own
    assert settings.aws.admin_user == "ec2-user" and settings.azure.admin_user == "azure-user"
    assert settings.tunnel.auth_mode == "pubkey" and settings.tunnel.psk is None
    assert (settings.tunnel.aws_role, settings.tunnel.azure_role) == ("active", "active")
    assert settings.tags["stack"] == "dev" and settings.tags["owner"] == "network-team"


def test_gateway_defaults_to_a_xen_instance_type_and_a_nitro_one_needs_the_ena_opt_in(
    dev_config: tuple[Values, set[str]]
) -> None:
    values, secrets = dev_config
    _set("aws", instanceType=None)(values)
    settings = parse_settings(values, secrets)
    assert settings.aws.instance_type == "t2.small" and not settings.aws.image_has_ena
    assert settings.tunnel.require_up and not settings.azure.image_specialized
    _set("aws", instanceType="m6i.large", imageHasEna=True)(values)
    assert parse_settings(values, secrets).aws.instance_type == "m6i.large"


def test_ed25519_and_long_rsa_keys_are_taken_as_both_clouds_take_them(
    dev_config: tuple[Values, set[str]], tmp_path: Path
) -> None:
    values, secrets = dev_config
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    values[P + "sshPublicKey"] = key.with_suffix(".pub").read_text().strip()
    assert parse_settings(values, secrets).access.ssh_public_key.startswith("ssh-ed25519 ")


def test_secret_values_never_show_in_repr(dev_config: tuple[Values, set[str]]) -> None:
    values, secrets = dev_config
    _set("tunnel", authMode="psk")(values)
    values[P + "psk"] = PSK
    settings = parse_settings(values, secrets | {P + "psk"})
    assert settings.tunnel.psk is not None and settings.tunnel.psk.value == PSK
    shown = repr(settings) + str(settings.tunnel.psk)
    assert PSK not in shown
    assert "PRIVATE KEY" not in shown


def test_psk_problem_message_never_quotes_the_psk(dev_config: tuple[Values, set[str]]) -> None:
    values, secrets = dev_config
    _set("tunnel", authMode="psk")(values)
    values[P + "psk"] = 'has"quote-and-is-long-enough'
    with pytest.raises(ConfigProblems) as caught:
        parse_settings(values, secrets | {P + "psk"})
    assert "has\"quote" not in str(caught.value) and "psk" in str(caught.value)
