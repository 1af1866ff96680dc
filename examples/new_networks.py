"""The smallest complete program: two new networks joined by the gateway pair.

Use it as the ``__main__.py`` of your own Pulumi project (``pip install`` cross-cloud-vpn
first) with this config (namespace ``example``): ``sshPublicKey``, ``sshPrivateKey``
(secret), ``adminCidr``, ``amiId``, ``azureImageId``. Run under mocks by tests/test_examples.py.
"""

import pulumi

from cross_cloud_vpn.components import (
    AwsSite,
    AwsSiteArgs,
    AzureSite,
    AzureSiteArgs,
    Ikev2GatewayPair,
    Ikev2GatewayPairArgs,
)

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
        remote_cidrs=azure_nets,
        admin_cidrs=admin,
        ssh_public_key=ssh_public_key,
        ami_id=config.require("amiId"),
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
    ),
)
pair = Ikev2GatewayPair(
    "vpn",
    Ikev2GatewayPairArgs(
        left=aws_site.endpoint(),
        right=azure_site.endpoint(),
        ssh_private_key=config.require_secret("sshPrivateKey"),
        admin_cidrs=admin,
    ),
)
pulumi.export("tunnel_status", pair.tunnel_status)
pulumi.export("aws_public_ip", aws_site.public_ip)
pulumi.export("azure_public_ip", azure_site.public_ip)
