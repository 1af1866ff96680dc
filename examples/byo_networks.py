"""Join an existing VPC and an existing VNet: only the gateway side is created.

The networks behind each gateway are read from the clouds (``aws.ec2.get_vpc``,
``network.get_virtual_network``). Config (namespace ``example``): ``sshPublicKey``,
``sshPrivateKey`` (secret), ``adminCidr``, ``amiId``, ``azureImageId``, ``vpcId``,
``gatewaySubnetId``, ``routeTableId``, ``vnetResourceGroup``, ``vnetName``,
``azureGatewaySubnetId``, ``azureRouteTableId``. Run under mocks by tests/test_examples.py.
"""

import pulumi
import pulumi_aws as aws
import pulumi_azure_native as azure_native

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
vnet_rg, vnet_name = config.require("vnetResourceGroup"), config.require("vnetName")

vpc = aws.ec2.get_vpc(id=config.require("vpcId"))
aws_nets = [a.cidr_block for a in vpc.cidr_block_associations]
vnet = azure_native.network.get_virtual_network(resource_group_name=vnet_rg, virtual_network_name=vnet_name)
azure_nets = list(vnet.address_space.address_prefixes)

aws_site = AwsSite(
    "aws",
    AwsSiteArgs(
        vpc_id=vpc.id,
        gateway_subnet_id=config.require("gatewaySubnetId"),
        workload_route_table_ids=[config.require("routeTableId")],
        local_cidrs=aws_nets,
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
        resource_group_name=vnet_rg,
        vnet_id=f"{vnet.id}",
        gateway_subnet_id=config.require("azureGatewaySubnetId"),
        workload_route_table_ids=[config.require("azureRouteTableId")],
        local_cidrs=azure_nets,
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
