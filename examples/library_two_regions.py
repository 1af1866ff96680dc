"""A program of your own: another address plan, explicit providers, Outputs, PSK mode.

- AWS in ``us-east-2`` through an explicit provider, joining an **existing** VPC whose id and
  CIDR blocks arrive as Outputs (``aws.ec2.get_vpc_output``), its route table made in this
  same program (an Output id);
- Azure in ``northeurope`` through an explicit provider, a VNet created from CIDRs;
- a pre-shared key from the stack's secret config.

The pair's firewall rules for each side go through that side's provider (taken from
``site.endpoint()``), so they land in the site's own account and region. Config (namespace
``example``): ``sshPublicKey``, ``sshPrivateKey`` (secret), ``adminCidr``, ``amiId``,
``azureImageId``, ``vpcId``, ``gatewaySubnetId``, ``psk`` (secret). Run under mocks by
tests/test_examples.py.
"""

import pulumi
import pulumi_aws as aws
import pulumi_azure_native as azure_native

from cross_cloud_vpn.components import (
    AwsSite,
    AwsSiteArgs,
    AzureSite,
    AzureSiteArgs,
    IkeAuthMode,
    Ikev2GatewayPair,
    Ikev2GatewayPairArgs,
)

config = pulumi.Config("example")
ssh_public_key = config.require("sshPublicKey")
admin = [config.require("adminCidr")]

ohio = aws.Provider("ohio", region="us-east-2")
europe = azure_native.Provider("europe", location="northeurope")

vpc = aws.ec2.get_vpc_output(id=config.require("vpcId"), opts=pulumi.InvokeOutputOptions(provider=ohio))
# Only associated blocks carry traffic (a VPC lists its removed ones too).
vpc_cidrs = vpc.cidr_block_associations.apply(
    lambda blocks: [b.cidr_block for b in blocks if b.state == "associated"]
)
workloads = aws.ec2.RouteTable("workloads", vpc_id=vpc.id, opts=pulumi.ResourceOptions(provider=ohio))

aws_site = AwsSite(
    "ohio",
    AwsSiteArgs(
        vpc_id=vpc.id,
        gateway_subnet_id=config.require("gatewaySubnetId"),
        workload_route_table_ids=[workloads.id],
        local_cidrs=vpc_cidrs,
        remote_cidrs=["192.168.16.0/22", "192.168.20.0/22"],
        admin_cidrs=admin,
        ssh_public_key=ssh_public_key,
        ami_id=config.require("amiId"),
        instance_type="m4.large",
    ),
    opts=pulumi.ResourceOptions(provider=ohio),
)
azure_site = AzureSite(
    "dublin",
    AzureSiteArgs(
        location="northeurope",
        resource_group_name="vpn-dublin",
        vnet_cidr="192.168.16.0/20",
        gateway_subnet_cidr="192.168.31.240/28",
        workload_subnet_cidrs=["192.168.16.0/22", "192.168.20.0/22"],
        gateway_private_ip="192.168.31.250",
        remote_cidrs=vpc_cidrs,
        admin_cidrs=admin,
        ssh_public_key=ssh_public_key,
        image_id=config.require("azureImageId"),
    ),
    opts=pulumi.ResourceOptions(provider=europe),
)
pair = Ikev2GatewayPair(
    "vpn",
    Ikev2GatewayPairArgs(
        left=aws_site.endpoint(),
        right=azure_site.endpoint(),
        ssh_private_key=config.require_secret("sshPrivateKey"),
        admin_cidrs=admin,
        auth_mode=IkeAuthMode.PSK,
        psk=config.require_secret("psk"),
    ),
)
pulumi.export("aws_iked_conf", pair.left_iked_conf)
pulumi.export("azure_iked_conf", pair.right_iked_conf)
pulumi.export("tunnel_status", pair.tunnel_status)
