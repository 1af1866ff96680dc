"""The real components built from inputs the way another language sends them through the package.

A TypeScript or YAML program hands the component provider camelCase inputs; the SDK maps them
to Python names (``ComponentProvider.map_inputs``), hands plain dicts to the component, sends
integers as floats and enums as their strings. The real components must turn exactly that into
the same gateway configuration a Python program gets.
"""

from typing import Any

from pulumi.provider.experimental.component import ComponentProvider

from cross_cloud_vpn.components import AwsSite, AzureSite, Ikev2GatewayPair
from cross_cloud_vpn.lab_cloud import evaluate
from cross_cloud_vpn.openbsd import parse_bootstrap
from tests.conftest import PSK

NAME = "cross-cloud-vpn"


def test_components_built_from_another_languages_inputs_push_the_right_iked_conf(
    ssh_keypair: tuple[str, str], iked_public_keys: dict[str, str]
) -> None:
    provider = ComponentProvider([AwsSite, AzureSite, Ikev2GatewayPair], NAME, version="0.0.1")
    defs = provider._component_defs
    common = {"adminCidrs": ["192.0.2.0/24"], "sshPublicKey": ssh_keypair[0]}

    def program() -> dict[str, Any]:
        aws = AwsSite("aws", provider.map_inputs({
            **common, "remoteCidrs": ["10.20.1.0/24"], "amiId": "ami-0123456789abcdef0",
            "vpcCidr": "10.10.0.0/16", "gatewaySubnetCidr": "10.10.0.0/24",
            "workloadSubnetCidrs": ["10.10.1.0/24"], "gatewayPrivateIp": "10.10.0.10",
        }, defs["AwsSite"]))
        azure = AzureSite("azure", provider.map_inputs({
            **common, "remoteCidrs": ["10.10.1.0/24"], "location": "westeurope", "resourceGroupName": "rg",
            "imageId": "/subscriptions/0/resourceGroups/img/providers/Microsoft.Compute/images/obsd",
            "vnetCidr": "10.20.0.0/16", "gatewaySubnetCidr": "10.20.0.0/24",
            "workloadSubnetCidrs": ["10.20.1.0/24"], "gatewayPrivateIp": "10.20.0.10",
        }, defs["AzureSite"]))

        def endpoint(site: AwsSite | AzureSite, extra: dict[str, Any]) -> dict[str, Any]:
            return {"site": site.site, "adminUser": site.admin_user, "publicIp": site.public_ip,
                    "gatewayPrivateIp": site.gateway_private_ip, "localCidrs": site.local_cidrs,
                    "gatewayReady": site.gateway_ready, **extra}

        pair = Ikev2GatewayPair("vpn", provider.map_inputs({
            "left": endpoint(aws, {"awsSecurityGroupId": aws.security_group_id}),
            "right": endpoint(azure, {"azureResourceGroupName": azure.resource_group_name,
                                      "azureNetworkSecurityGroupName": azure.gateway_nsg_name}),
            "sshPrivateKey": ssh_keypair[1], "adminCidrs": ["192.0.2.0/24"],
            "authMode": "psk", "psk": PSK, "dpdInterval": 15.0, "rightRole": "passive",
        }, defs["Ikev2GatewayPair"]))
        return {"tunnel_status": pair.tunnel_status}

    ev = evaluate(program, {}, set(), public_keys=iked_public_keys)
    aws_conf = parse_bootstrap(ev.named("vpn-aws-configure").inputs["stdin"]).files["/etc/iked.conf"][0]
    azure_conf = parse_bootstrap(ev.named("vpn-azure-configure").inputs["stdin"]).files["/etc/iked.conf"][0]
    assert "set dpd_check_interval 15\n" in aws_conf, "a float from another language must render as 15"
    assert '"aws-to-azure" active esp' in aws_conf and '"azure-to-aws" passive esp' in azure_conf
    assert f'psk "{PSK}"' in aws_conf and "local 10.10.0.10 peer 203.0.113.20" in aws_conf
    rules = [r for r in ev.resources if "-from-" in r.name]
    assert {r.type for r in rules} == {"aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                                       "azure-native:network:SecurityRule"}
    assert "stdin" in ev.named("vpn-aws-configure").secret_inputs
