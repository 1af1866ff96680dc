"""The program behind ``__main__.py``: stack config -> two sites -> gateway pair -> outputs."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_azure_native as azure_native

from cross_cloud_vpn.checks import GATEWAY_HOST_INDEX
from cross_cloud_vpn.components import (
    AwsSite,
    AwsSiteArgs,
    AwsTestVmArgs,
    AzureSite,
    AzureSiteArgs,
    AzureTestVmArgs,
    IkeAuthMode,
    IkeRole,
    Ikev2GatewayPair,
    Ikev2GatewayPairArgs,
    Ikev2TunnelSet,
    Ikev2TunnelSetArgs,
)
from cross_cloud_vpn.components.aws_site import AwsHaArgs, AwsHaSteering
from cross_cloud_vpn.components.azure_site import AzureHaArgs, resource_id_part
from cross_cloud_vpn.components.images import AwsImage, AwsImageArgs, AzureImage, AzureImageArgs
from cross_cloud_vpn.components.pinned_ami import PinnedAmi, PinnedAmiArgs
from cross_cloud_vpn.disk_image import DiskImageError, prepare_for_aws, prepare_for_azure
from cross_cloud_vpn.stack_config import (
    PROJECT,
    TEST_VM_HOST_INDEX,
    NetworkSettings,
    StackSettings,
    host_address,
    load_settings,
    overlap_problems,
)


def _ami(settings: StackSettings, opts: pulumi.ResourceOptions) -> pulumi.Input[str]:
    """The gateway's AMI: the id given, or the lookup's answer kept until the lookup changes."""
    if settings.aws.ami_id:
        return settings.aws.ami_id
    return PinnedAmi(
        f"{settings.prefix}-aws-ami",
        PinnedAmiArgs(owner=settings.aws.ami_owner or "self", name_filter=settings.aws.ami_name_filter or ""),
        opts=opts,
    ).ami_id


def _aws_local_cidrs(net: NetworkSettings, opts: pulumi.InvokeOptions) -> list[str]:
    """The networks behind the AWS gateway: the created workload subnets, or a BYO VPC's blocks."""
    if not net.brings_own:
        return list(net.workload_subnet_cidrs)
    vpc = aws.ec2.get_vpc(id=net.existing_id, opts=opts)
    # A VPC keeps its removed blocks in the list as disassociating/disassociated/failed; only an
    # "associated" block carries traffic (VpcCidrBlockState:
    # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_VpcCidrBlockState.html).
    blocks = [
        a.cidr_block
        for a in vpc.cidr_block_associations or []
        if a.cidr_block and a.state == "associated"
    ]
    return blocks or [vpc.cidr_block]


def _azure_local_cidrs(net: NetworkSettings, opts: pulumi.InvokeOptions) -> list[str]:
    """The networks behind the Azure gateway: the created workload subnets, or a BYO VNet's space."""
    if not net.brings_own or net.existing_id is None:
        return list(net.workload_subnet_cidrs)
    vnet = azure_native.network.get_virtual_network(
        resource_group_name=resource_id_part(net.existing_id, "resourceGroups"),
        virtual_network_name=resource_id_part(net.existing_id, "virtualNetworks"),
        opts=opts,
    )
    space = vnet.address_space
    return list(space.address_prefixes or []) if space else []


def _check_looked_up(aws_cidrs: list[str], azure_cidrs: list[str], s: StackSettings) -> None:
    """Sides apart, with a BYO network's real CIDRs; the config check could not see those."""

    def labelled(side: str, key: str, net: NetworkSettings, cidrs: list[str]) -> list[tuple[str, str]]:
        label = f"{side}.{key} {net.existing_id}" if net.brings_own else f"{side}.workloadSubnetCidrs"
        return [(label, c) for c in cidrs]

    problems = overlap_problems(
        labelled("aws", "vpcId", s.aws.network, aws_cidrs),
        labelled("azure", "vnetId", s.azure.network, azure_cidrs),
    )
    empty = [
        f"'{PROJECT}:{side}.{key}' {net.existing_id!r} has no IPv4 address space"
        for side, key, net, cidrs in (
            ("aws", "vpcId", s.aws.network, aws_cidrs),
            ("azure", "vnetId", s.azure.network, azure_cidrs),
        )
        if not cidrs
    ]
    if problems or empty:
        raise pulumi.RunError(
            "the looked-up networks cannot be joined (nothing was created):\n"
            + "\n".join(f"  - {p}" for p in [*empty, *problems])
        )


def _prepared_images(s: StackSettings) -> tuple[Path, Path] | None:
    """The ``imageFile`` converted for AWS (raw) and Azure (fixed VHD), cached by its hash."""
    if s.image_file is None:
        return None
    try:
        return (
            prepare_for_aws(s.image_file.path, info=s.image_file),
            prepare_for_azure(s.image_file.path, info=s.image_file),
        )
    except DiskImageError as err:
        raise pulumi.RunError(f"'{PROJECT}:imageFile' is {str(s.image_file.path)!r}: {err}") from None


def build(settings: StackSettings | None = None) -> dict[str, pulumi.Output[object] | object]:
    """Register every resource of the stack; return the stack outputs by name."""
    settings = settings or load_settings()
    s, prefix = settings, settings.prefix
    prepared = _prepared_images(s)
    aws_provider = aws.Provider(f"{prefix}-aws", region=s.aws.region, default_tags={"tags": dict(s.tags)})
    azure_provider = azure_native.Provider(f"{prefix}-azure", location=s.azure.location)
    aws_opts = pulumi.ResourceOptions(providers=[aws_provider])
    aws_net, azure_net = s.aws.network, s.azure.network
    aws_cidrs = _aws_local_cidrs(aws_net, pulumi.InvokeOptions(provider=aws_provider))
    azure_cidrs = _azure_local_cidrs(azure_net, pulumi.InvokeOptions(provider=azure_provider))
    _check_looked_up(aws_cidrs, azure_cidrs, s)
    azure_opts = pulumi.ResourceOptions(providers=[azure_provider])

    ami_id: pulumi.Input[str]
    image_id: pulumi.Input[str]
    if prepared is not None and s.image_file is not None:
        aws_image = AwsImage(
            f"{prefix}-aws-image",
            AwsImageArgs(source_path=str(prepared[0]), sha256=s.image_file.sha256, tags=dict(s.tags)),
            opts=aws_opts,
        )
        azure_image = AzureImage(
            f"{prefix}-azure-image",
            AzureImageArgs(
                source_path=str(prepared[1]),
                sha256=s.image_file.sha256,
                resource_group_name=s.azure.images_resource_group_name,
                location=s.azure.location,
                tags=dict(s.tags),
                create_resource_group=True,
            ),
            opts=azure_opts,
        )
        ami_id, image_id = aws_image.ami_id, azure_image.image_id
    else:
        ami_id, image_id = _ami(s, aws_opts), s.azure.image_id or ""

    aws_test_vm = None
    if s.aws.test_vm is not None:
        aws_test_vm = AwsTestVmArgs(
            ami_id=PinnedAmi(
                f"{prefix}-aws-test-vm-ami",
                PinnedAmiArgs(owner=s.aws.test_vm.ami_owner, name_filter=s.aws.test_vm.ami_name_filter),
                opts=aws_opts,
            ).ami_id,
            instance_type=s.aws.test_vm.instance_type,
            private_ip=host_address(aws_net.workload_subnet_cidrs[0], TEST_VM_HOST_INDEX),
        )
    aws_site = AwsSite(
        f"{prefix}-aws",
        AwsSiteArgs(
            vpc_cidr=aws_net.cidr,
            gateway_subnet_cidr=aws_net.gateway_subnet_cidr,
            workload_subnet_cidrs=aws_net.workload_subnet_cidrs,
            vpc_id=aws_net.existing_id,
            gateway_subnet_id=aws_net.gateway_subnet_id,
            workload_route_table_ids=aws_net.workload_route_table_ids,
            local_cidrs=aws_cidrs if aws_net.brings_own else None,
            remote_cidrs=azure_cidrs,
            admin_cidrs=s.access.admin_cidrs,
            allow_ssh_from_anywhere=s.access.allow_ssh_from_anywhere,
            ssh_public_key=s.access.ssh_public_key,
            ami_id=ami_id,
            gateway_private_ip=aws_net.gateway_private_ip,
            instance_type=s.aws.instance_type,
            image_has_ena=s.aws.image_has_ena,
            admin_user=s.aws.admin_user,
            availability_zone=s.aws.availability_zone,
            tags=dict(s.tags),
            test_vm=aws_test_vm,
            ha=None if s.ha is None else AwsHaArgs(
                steering=AwsHaSteering(s.ha.aws_steering),
                second_gateway_subnet_cidr=aws_net.second_gateway_subnet_cidr,
                second_availability_zone=s.ha.aws_second_availability_zone,
                second_gateway_private_ip=None if aws_net.second_gateway_subnet_cidr is None
                else host_address(aws_net.second_gateway_subnet_cidr, GATEWAY_HOST_INDEX),
                bgp_as=s.ha.aws_asn,
                # Each belongs to one steering; the site refuses the other's.
                route_server_as=s.ha.route_server_asn if s.ha.aws_steering == "route-server" else None,
                probe_port=s.ha.probe_port if s.ha.aws_steering == "route-tables" else None,
            ),
        ),
        opts=aws_opts,
    )

    azure_test_vm = None
    if s.azure.test_vm is not None:
        tv = s.azure.test_vm
        azure_test_vm = AzureTestVmArgs(
            private_ip=host_address(azure_net.workload_subnet_cidrs[0], TEST_VM_HOST_INDEX),
            vm_size=tv.vm_size,
            image_publisher=tv.image_publisher,
            image_offer=tv.image_offer,
            image_sku=tv.image_sku,
            image_version=tv.image_version,
        )
    azure_site = AzureSite(
        f"{prefix}-azure",
        AzureSiteArgs(
            location=s.azure.location,
            resource_group_name=s.azure.resource_group_name,
            vnet_cidr=azure_net.cidr,
            gateway_subnet_cidr=azure_net.gateway_subnet_cidr,
            workload_subnet_cidrs=azure_net.workload_subnet_cidrs,
            vnet_id=azure_net.existing_id,
            gateway_subnet_id=azure_net.gateway_subnet_id,
            workload_route_table_ids=azure_net.workload_route_table_ids,
            local_cidrs=azure_cidrs if azure_net.brings_own else None,
            remote_cidrs=aws_cidrs,
            admin_cidrs=s.access.admin_cidrs,
            allow_ssh_from_anywhere=s.access.allow_ssh_from_anywhere,
            ssh_public_key=s.access.ssh_public_key,
            image_id=image_id,
            image_specialized=s.azure.image_specialized,
            gateway_private_ip=azure_net.gateway_private_ip,
            vm_size=s.azure.vm_size,
            admin_user=s.azure.admin_user,
            tags=dict(s.tags),
            test_vm=azure_test_vm,
            ha=None if s.ha is None else AzureHaArgs(
                second_gateway_private_ip=s.ha.azure_second_gateway_ip,
                load_balancer_private_ip=s.ha.azure_load_balancer_ip,
                zones=list(s.ha.azure_zones),
                probe_port=s.ha.probe_port,
                bgp_as=s.ha.azure_asn,
            ),
        ),
        opts=azure_opts,
    )

    tunnel = dict(
        ssh_private_key=pulumi.Output.secret(s.access.ssh_private_key.value),
        admin_cidrs=s.access.admin_cidrs,
        allow_ssh_from_anywhere=s.access.allow_ssh_from_anywhere,
        auth_mode=IkeAuthMode(s.tunnel.auth_mode),
        psk=None if s.tunnel.psk is None else pulumi.Output.secret(s.tunnel.psk.value),
        ike_proposal=s.tunnel.ike_proposal,
        child_proposals=s.tunnel.child_proposals,
        dpd_interval=s.tunnel.dpd_interval,
        left_role=IkeRole(s.tunnel.aws_role),
        right_role=IkeRole(s.tunnel.azure_role),
        require_tunnel_up=s.tunnel.require_up,
    )
    both_providers = pulumi.ResourceOptions(providers=[aws_provider, azure_provider])
    if s.ha is not None:
        return _ha_outputs(
            aws_site,
            azure_site,
            Ikev2TunnelSet(
                f"{prefix}-tunnel",
                Ikev2TunnelSetArgs(left=aws_site.endpoints(), right=azure_site.endpoints(), **tunnel),  # type: ignore[typeddict-item]
                opts=both_providers,
            ),
        )
    pair = Ikev2GatewayPair(
        f"{prefix}-tunnel",
        Ikev2GatewayPairArgs(left=aws_site.endpoint(), right=azure_site.endpoint(), **tunnel),  # type: ignore[typeddict-item]
        opts=both_providers,
    )

    def ssh(site: AwsSite | AzureSite) -> pulumi.Output[str]:
        return pulumi.Output.concat("ssh ", site.admin_user, "@", site.public_ip)

    return {
        "aws_public_ip": aws_site.public_ip,
        "azure_public_ip": azure_site.public_ip,
        "aws_gateway_private_ip": aws_site.gateway_private_ip,
        "azure_gateway_private_ip": azure_site.gateway_private_ip,
        "aws_cidrs": aws_site.local_cidrs,
        "azure_cidrs": azure_site.local_cidrs,
        "aws_iked_conf": pair.left_iked_conf,
        "azure_iked_conf": pair.right_iked_conf,
        "aws_pf_conf": pair.left_pf_conf,
        "azure_pf_conf": pair.right_pf_conf,
        "ssh_aws": ssh(aws_site),
        "ssh_azure": ssh(azure_site),
        "aws_test_vm_private_ip": aws_site.test_vm_private_ip,
        "azure_test_vm_private_ip": azure_site.test_vm_private_ip,
        "tunnel_status": pair.tunnel_status,
    }


def _ha_outputs(aws_site: AwsSite, azure_site: AzureSite, tunnels: Ikev2TunnelSet) -> dict[str, object]:
    """HA mode's stack outputs: one entry per gateway, in order (gateway n of each side form
    tunnel n)."""

    def ssh(user: pulumi.Output[str], ips: pulumi.Output[list[str]]) -> pulumi.Output[list[str]]:
        return pulumi.Output.all(user, ips).apply(lambda v: [f"ssh {v[0]}@{ip}" for ip in v[1]])

    return {
        "aws_public_ips": aws_site.gateway_public_ips,
        "azure_public_ips": azure_site.gateway_public_ips,
        "aws_gateway_private_ips": aws_site.gateway_private_ips,
        "azure_gateway_private_ips": azure_site.gateway_private_ips,
        "azure_load_balancer_ip": azure_site.load_balancer_private_ip,
        "aws_cidrs": aws_site.local_cidrs,
        "azure_cidrs": azure_site.local_cidrs,
        "aws_iked_confs": tunnels.left_iked_confs,
        "azure_iked_confs": tunnels.right_iked_confs,
        "ssh_aws": ssh(aws_site.admin_user, aws_site.gateway_public_ips),
        "ssh_azure": ssh(azure_site.admin_user, azure_site.gateway_public_ips),
        "aws_test_vm_private_ip": aws_site.test_vm_private_ip,
        "azure_test_vm_private_ip": azure_site.test_vm_private_ip,
        "tunnel_status": tunnels.tunnel_status,
    }
