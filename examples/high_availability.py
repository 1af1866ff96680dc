"""HA mode from the components: two gateways per side in two zones, one tunnel each.

Gateway n of one side is joined to gateway n of the other (A1<->B1, A2<->B2); each tunnel
carries a BGP session, AWS moves its routes to the pair whose tunnel works (the gateways' own
route writes, the default steering) and Azure sends flows through an internal load balancer
that probes each gateway. Config (namespace ``example``) as in ``new_networks.py``. Run under
mocks by tests/test_examples.py.
"""

import pulumi

from cross_cloud_vpn.components import (
    AwsSite,
    AwsSiteArgs,
    AzureSite,
    AzureSiteArgs,
    Ikev2TunnelSet,
    Ikev2TunnelSetArgs,
)
from cross_cloud_vpn.components.aws_site import AwsHaArgs
from cross_cloud_vpn.components.azure_site import AzureHaArgs

config = pulumi.Config("example")
ssh_public_key = config.require("sshPublicKey")
admin = [config.require("adminCidr")]
aws_nets, azure_nets = ["10.10.1.0/24"], ["10.20.1.0/24"]

aws_site = AwsSite(
    "aws",
    AwsSiteArgs(
        vpc_cidr="10.10.0.0/16",
        gateway_subnet_cidr="10.10.0.0/24",
        workload_subnet_cidrs=aws_nets,
        gateway_private_ip="10.10.0.10",
        availability_zone="eu-west-1a",
        remote_cidrs=azure_nets,
        admin_cidrs=admin,
        ssh_public_key=ssh_public_key,
        ami_id=config.require("amiId"),
        ha=AwsHaArgs(
            second_gateway_subnet_cidr="10.10.2.0/24",
            second_availability_zone="eu-west-1b",
            second_gateway_private_ip="10.10.2.10",
        ),
    ),
)
azure_site = AzureSite(
    "azure",
    AzureSiteArgs(
        location="westeurope",
        resource_group_name="vpn-example",
        vnet_cidr="10.20.0.0/16",
        gateway_subnet_cidr="10.20.0.0/24",
        workload_subnet_cidrs=azure_nets,
        gateway_private_ip="10.20.0.10",
        remote_cidrs=aws_nets,
        admin_cidrs=admin,
        ssh_public_key=ssh_public_key,
        image_id=config.require("azureImageId"),
        ha=AzureHaArgs(second_gateway_private_ip="10.20.0.11", load_balancer_private_ip="10.20.0.12"),
    ),
)
tunnels = Ikev2TunnelSet(
    "vpn",
    Ikev2TunnelSetArgs(
        left=aws_site.endpoints(),
        right=azure_site.endpoints(),
        ssh_private_key=config.require_secret("sshPrivateKey"),
        admin_cidrs=admin,
    ),
)
pulumi.export("tunnel_status", tunnels.tunnel_status)
pulumi.export("aws_public_ips", aws_site.gateway_public_ips)
pulumi.export("azure_public_ips", azure_site.gateway_public_ips)
