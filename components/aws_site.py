"""The AWS side: a VPC with an OpenBSD gateway behind an Elastic IP."""

from collections.abc import Callable, Mapping, Sequence
from typing import NotRequired, TypedDict, cast

import pulumi
import pulumi_aws as aws

from cross_cloud_vpn.openbsd.platform import DEFAULT_AWS_INSTANCE_TYPE, instance_type_problem

from .site import (
    GatewayEndpointArgs,
    checked_site_inputs,
    cidr_slug,
    common_site_problems,
    for_each,
    host_cidr,
    joined,
    listed,
    network_mode_problems,
    refuse,
)


class AwsTestVmArgs(TypedDict):
    """A small Linux VM in the first workload subnet, to ping across the tunnel."""

    ami_id: pulumi.Input[str]
    """Its (Linux) AMI."""
    private_ip: str
    """Its fixed address in the first workload subnet."""
    instance_type: NotRequired[str | None]
    """Default ``t3.micro``."""


class AwsSiteArgs(TypedDict):
    """Everything :class:`AwsSite` builds from.

    Either create a network (``vpc_cidr``, ``gateway_subnet_cidr``, ``workload_subnet_cidrs``:
    plain strings, known at preview) or bring your own (``vpc_id``, ``gateway_subnet_id``,
    ``workload_route_table_ids`` and the ``local_cidrs`` it carries, e.g. from
    ``aws.ec2.get_vpc_output``; Outputs welcome): then only the gateway, its Elastic IP,
    security group and the routes to the remote networks are created. Every argument is checked
    when the site is constructed (an Output as soon as it resolves).
    """

    remote_cidrs: pulumi.Input[Sequence[pulumi.Input[str]]]
    """The peer's networks: routed to the gateway, allowed through its security group. They
    must not overlap the local ones."""
    admin_cidrs: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Networks allowed to SSH to the gateway (your own public IP/32 at least)."""
    allow_ssh_from_anywhere: NotRequired[bool | None]
    """Needed for ``0.0.0.0/0`` in ``admin_cidrs``; default no."""
    ssh_public_key: pulumi.Input[str]
    """OpenSSH public key of the admin user: ``ssh-ed25519``, or ``ssh-rsa`` of 2048+ bits."""
    ami_id: pulumi.Input[str]
    """The OpenBSD AMI."""
    gateway_private_ip: NotRequired[str | None]
    """Fixed private IP of the gateway, inside the gateway subnet; unset lets AWS pick one."""
    instance_type: NotRequired[str | None]
    """Default ``t2.small``: a Xen-based type, since OpenBSD has no ENA driver (see ``image_has_ena``)."""
    image_has_ena: NotRequired[bool | None]
    """The image carries its own ENA driver, so a Nitro ``instance_type`` is allowed; default no."""
    admin_user: NotRequired[pulumi.Input[str] | None]
    """User with doas on the image; default ``ec2-user``."""
    availability_zone: NotRequired[str | None]
    """Zone of the created subnets; default: AWS picks."""
    tags: NotRequired[Mapping[str, str] | None]
    """Tags on every resource that takes them (with ``Name``)."""
    test_vm: NotRequired[AwsTestVmArgs | None]
    """A small Linux VM in the first workload subnet (create mode only)."""
    vpc_cidr: NotRequired[str | None]
    """Create: the VPC."""
    gateway_subnet_cidr: NotRequired[str | None]
    """Create: the gateway's public subnet."""
    workload_subnet_cidrs: NotRequired[Sequence[str] | None]
    """Create: subnets routed through the tunnel."""
    vpc_id: NotRequired[pulumi.Input[str] | None]
    """Bring your own: an existing VPC."""
    gateway_subnet_id: NotRequired[pulumi.Input[str] | None]
    """Bring your own: a public subnet for the gateway."""
    workload_route_table_ids: NotRequired[Sequence[pulumi.Input[str]] | None]
    """Bring your own: route tables that get a route per remote CIDR."""
    local_cidrs: NotRequired[pulumi.Input[Sequence[pulumi.Input[str]]] | None]
    """Bring your own: the networks behind the gateway (the VPC's associated CIDR blocks)."""


class AwsSite(pulumi.ComponentResource):
    """The AWS side of a tunnel: VPC (or yours), routes, security group, Elastic IP and the
    OpenBSD gateway instance. Join it to a peer with :class:`Ikev2GatewayPair` through
    :meth:`endpoint`."""

    site: str
    """Always "aws" (the default name of this side in a pair)."""
    admin_user: pulumi.Output[str]
    """The user with doas the bootstrap logs in as."""
    public_ip: pulumi.Output[str]
    """The Elastic IP: the gateway's address for the peer and for SSH."""
    gateway_private_ip: pulumi.Output[str]
    """The gateway's own address (iked's ``local``)."""
    local_cidrs: pulumi.Output[list[str]]
    """The networks behind the gateway: the created workload subnets, or ``local_cidrs``."""
    remote_cidrs: pulumi.Output[list[str]]
    """The peer's networks, routed to the gateway."""
    instance_id: pulumi.Output[str]
    """The gateway instance: a new id means a new machine, which the pair configures again."""
    vpc_id: pulumi.Output[str]
    """The VPC: created, or yours."""
    security_group_id: pulumi.Output[str]
    """The gateway's security group (the pair adds the peer-only IKE rules to it)."""
    test_vm_private_ip: pulumi.Output[str | None]
    """The test VM's address, if there is one."""
    gateway_ready: pulumi.Output[str]
    """The Elastic IP association: exists once the gateway is reachable at ``public_ip``."""

    def __init__(self, name: str, args: AwsSiteArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Check ``args`` (every problem at once, before any child), then build the AWS side."""
        super().__init__("cross-cloud-vpn:index:AwsSite", name, None, opts)
        component = f"AwsSite {name!r}"
        mode = network_mode_problems(args, "vpc_cidr", "vpc_id", "workload_route_table_ids")
        instance_type = args.get("instance_type") or DEFAULT_AWS_INSTANCE_TYPE
        type_problem = None if args.get("image_has_ena") else instance_type_problem(instance_type)
        opt_out = "; or, if your image has its own ENA driver, set 'image_has_ena'"
        refuse(component, [
            *mode,
            *listed(type_problem and f"'instance_type' is {instance_type!r}: {type_problem}{opt_out}"),
            # The layout checks need a complete network description.
            *([] if mode else common_site_problems(args, "vpc_cidr")),
        ])
        child = pulumi.ResourceOptions(parent=self)
        self.site = "aws"
        tags = dict(args.get("tags") or {})
        local_cidrs, remote_cidrs, admin_cidrs, ssh_public_key, self.admin_user = checked_site_inputs(
            component, args, "vpc_cidr", default_user="ec2-user"
        )

        def tagged(suffix: str) -> dict[str, str]:
            return {**tags, "Name": f"{name}-{suffix}"}

        internet: list[pulumi.Resource] = []
        if args.get("vpc_id"):
            vpc_id: pulumi.Input[str] = args.get("vpc_id") or ""
            gateway_subnet_id: pulumi.Input[str] = args.get("gateway_subnet_id") or ""
            workload_route_table_ids: list[pulumi.Input[str]] = list(
                args.get("workload_route_table_ids") or []
            )
            workload_subnet_ids: list[pulumi.Output[str]] = []
        else:
            vpc_id, gateway_subnet_id, workload_route_table_ids, workload_subnet_ids, igw = self._network(
                name, args, tagged, child
            )
            internet.append(igw)

        sg = aws.ec2.SecurityGroup(
            f"{name}-gateway",
            vpc_id=vpc_id,
            tags=tagged("gateway"),
            description="cross-cloud-vpn gateway: SSH from admins, forwarded traffic; IKE/ESP added per peer",
            opts=child,
        )
        # Rules, routes and subnets are named after their CIDR, not their place in a list: an
        # entry added or removed touches only its own resources.
        for_each(
            admin_cidrs,
            lambda cidr: aws.vpc.SecurityGroupIngressRule(
                f"{name}-ssh-{cidr_slug(cidr)}",
                security_group_id=sg.id,
                ip_protocol="tcp",
                from_port=22,
                to_port=22,
                cidr_ipv4=cidr,
                description="SSH from an admin network",
                opts=child,
            ),
        )
        forwarded = joined(local_cidrs, remote_cidrs)
        for_each(
            forwarded,
            lambda cidr: aws.vpc.SecurityGroupIngressRule(
                f"{name}-forward-{cidr_slug(cidr)}",
                security_group_id=sg.id,
                ip_protocol="-1",
                cidr_ipv4=cidr,
                description="traffic the gateway forwards between the sites",
                opts=child,
            ),
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-egress",
            security_group_id=sg.id,
            ip_protocol="-1",
            cidr_ipv4="0.0.0.0/0",
            description="all outbound",
            opts=child,
        )

        key = aws.ec2.KeyPair(
            f"{name}-key", public_key=ssh_public_key, tags=tagged("key"), opts=child
        )
        instance = aws.ec2.Instance(
            f"{name}-gateway",
            ami=args["ami_id"],
            instance_type=instance_type,
            subnet_id=gateway_subnet_id,
            private_ip=args.get("gateway_private_ip"),
            vpc_security_group_ids=[sg.id],
            key_name=key.key_name,
            # The gateway forwards packets that are neither from nor to itself.
            source_dest_check=False,
            # IMDSv1 stays on: OpenBSD's cloud-agent fetches the SSH key and user data with plain GETs
            # and no IMDSv2 token (cloudinit_get in
            # https://github.com/reyk/cloud-agent/blob/master/agent/cloudinit.c). Hop limit 1: an
            # IMDSv2 token answer never gets past this host, which routes packets for both sites.
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "optional",
                "http_put_response_hop_limit": 1,
            },
            root_block_device={"encrypted": True, "volume_type": "gp3"},
            tags=tagged("gateway"),
            # A fixed private IP is still taken while the old machine exists
            # (InvalidIPAddress.InUse): delete it first.
            opts=pulumi.ResourceOptions(
                parent=self, delete_before_replace=bool(args.get("gateway_private_ip"))
            ),
        )
        # An Elastic IP needs the internet gateway attached first (Gateway.NotAttached).
        eip = aws.ec2.Eip(
            f"{name}-gateway",
            domain="vpc",
            tags=tagged("gateway"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=internet),
        )
        association = aws.ec2.EipAssociation(
            f"{name}-gateway",
            allocation_id=eip.allocation_id,
            instance_id=instance.id,
            # The address is still associated with the old machine (Resource.AlreadyAssociated).
            opts=pulumi.ResourceOptions(parent=self, depends_on=internet, delete_before_replace=True),
        )
        for t, table_id in enumerate(workload_route_table_ids):
            for_each(
                remote_cidrs,
                lambda cidr, t=t, table_id=table_id: aws.ec2.Route(  # type: ignore[misc]
                    f"{name}-to-{cidr_slug(cidr)}" if t == 0 else f"{name}-rt{t}-to-{cidr_slug(cidr)}",
                    route_table_id=table_id,
                    destination_cidr_block=cidr,
                    network_interface_id=instance.primary_network_interface_id,
                    opts=child,
                ),
            )

        self.test_vm_private_ip = pulumi.Output.from_input(None)
        test_vm = args.get("test_vm")
        if test_vm:
            self.test_vm_private_ip = self._test_vm(
                name,
                test_vm,
                vpc_id,
                workload_subnet_ids[0],
                key.key_name,
                joined([args.get("gateway_subnet_cidr") or ""], forwarded),
                tagged,
                child,
            )

        self.public_ip = eip.public_ip
        self.gateway_private_ip = instance.private_ip
        self.local_cidrs = pulumi.Output.from_input(local_cidrs).apply(list)
        self.remote_cidrs = pulumi.Output.from_input(remote_cidrs).apply(list)
        self.instance_id = instance.id
        self.vpc_id = pulumi.Output.from_input(vpc_id)
        self.security_group_id = sg.id
        self.gateway_ready = association.id
        self.register_outputs(
            {
                "public_ip": self.public_ip,
                "gateway_private_ip": self.gateway_private_ip,
                "admin_user": self.admin_user,
                "local_cidrs": self.local_cidrs,
                "remote_cidrs": self.remote_cidrs,
                "instance_id": self.instance_id,
                "vpc_id": self.vpc_id,
                "security_group_id": self.security_group_id,
                "test_vm_private_ip": self.test_vm_private_ip,
                "gateway_ready": self.gateway_ready,
            }
        )

    def endpoint(self, site: str | None = None) -> GatewayEndpointArgs:
        """This gateway as :class:`Ikev2GatewayPair` takes it; ``site`` renames the side (two AWS
        sites in one pair need two names), default ``"aws"``."""
        return GatewayEndpointArgs(
            site=site or self.site,
            admin_user=self.admin_user,
            public_ip=self.public_ip,
            gateway_private_ip=self.gateway_private_ip,
            local_cidrs=self.local_cidrs,
            remote_cidrs=self.remote_cidrs,
            gateway_ready=self.gateway_ready,
            machine_id=self.instance_id,
            aws_security_group_id=self.security_group_id,
            aws_provider=cast(aws.Provider | None, self.get_provider("aws::")),
        )

    def _network(
        self,
        name: str,
        args: AwsSiteArgs,
        tagged: Callable[[str], dict[str, str]],
        child: pulumi.ResourceOptions,
    ) -> tuple[
        pulumi.Output[str],
        pulumi.Output[str],
        list[pulumi.Input[str]],
        list[pulumi.Output[str]],
        pulumi.Resource,
    ]:
        """A new VPC: internet gateway, public gateway subnet, workload subnets and their route table."""
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.get("vpc_cidr"),
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags=tagged("vpc"),
            opts=child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tagged("igw"), opts=child)
        gateway_subnet = aws.ec2.Subnet(
            f"{name}-gateway",
            vpc_id=vpc.id,
            cidr_block=args.get("gateway_subnet_cidr"),
            availability_zone=args.get("availability_zone"),
            map_public_ip_on_launch=False,
            tags=tagged("gateway"),
            opts=child,
        )
        public_rt = aws.ec2.RouteTable(f"{name}-public", vpc_id=vpc.id, tags=tagged("public"), opts=child)
        aws.ec2.Route(
            f"{name}-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )
        aws.ec2.RouteTableAssociation(
            f"{name}-gateway", subnet_id=gateway_subnet.id, route_table_id=public_rt.id, opts=child
        )
        workload_rt = aws.ec2.RouteTable(
            f"{name}-workload", vpc_id=vpc.id, tags=tagged("workload"), opts=child
        )
        subnet_ids = []
        for cidr in args.get("workload_subnet_cidrs") or []:
            slug = cidr_slug(cidr)
            subnet = aws.ec2.Subnet(
                f"{name}-workload-{slug}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=args.get("availability_zone"),
                tags=tagged(f"workload-{slug}"),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-workload-{slug}", subnet_id=subnet.id, route_table_id=workload_rt.id, opts=child
            )
            subnet_ids.append(subnet.id)
        return vpc.id, gateway_subnet.id, [workload_rt.id], subnet_ids, igw

    def _test_vm(
        self,
        name: str,
        vm: AwsTestVmArgs,
        vpc_id: pulumi.Input[str],
        subnet_id: pulumi.Input[str],
        key_name: pulumi.Input[str],
        sources: pulumi.Input[Sequence[str]],
        tagged: Callable[[str], dict[str, str]],
        child: pulumi.ResourceOptions,
    ) -> pulumi.Output[str | None]:
        """A small Linux VM in the first workload subnet that anything of both sites may reach."""
        vm_sg = aws.ec2.SecurityGroup(
            f"{name}-test-vm",
            vpc_id=vpc_id,
            tags=tagged("test-vm"),
            # EC2 takes only a-zA-Z0-9, spaces and ._-:/()#,@[]+=&;{}!$* here (no apostrophe):
            # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html
            description="cross-cloud-vpn test VM: anything from the networks of both sites",
            opts=child,
        )
        for_each(
            sources,
            lambda cidr: aws.vpc.SecurityGroupIngressRule(
                f"{name}-test-vm-{cidr_slug(cidr)}",
                security_group_id=vm_sg.id,
                ip_protocol="-1",
                cidr_ipv4=cidr,
                opts=child,
            ),
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-test-vm-egress",
            security_group_id=vm_sg.id,
            ip_protocol="-1",
            cidr_ipv4="0.0.0.0/0",
            opts=child,
        )
        instance = aws.ec2.Instance(
            f"{name}-test-vm",
            ami=vm["ami_id"],
            instance_type=vm.get("instance_type") or "t3.micro",
            subnet_id=subnet_id,
            private_ip=vm["private_ip"],
            key_name=key_name,
            vpc_security_group_ids=[vm_sg.id],
            tags=tagged("test-vm"),
            metadata_options={"http_tokens": "required"},
            root_block_device={"encrypted": True, "volume_type": "gp3"},
            # Its fixed private IP is taken while the old VM exists: delete it first.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        return instance.private_ip


def aws_peer_rules(
    name: str,
    security_group_id: pulumi.Input[str],
    peer_public_ip: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> list[pulumi.Resource]:
    """Security group rules letting IKE (udp 500, 4500) and ESP in from the peer's public IP only."""
    peer = pulumi.Output.from_input(peer_public_ip).apply(host_cidr)
    rules: list[tuple[str, str, int | None]] = [
        ("ike", "udp", 500),
        ("nat-t", "udp", 4500),
        ("esp", "50", None),
    ]
    return [
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-{label}",
            security_group_id=security_group_id,
            ip_protocol=proto,
            from_port=port,
            to_port=port,
            cidr_ipv4=peer,
            description=f"{label.upper()} from the peer gateway only",
            opts=opts,
        )
        for label, proto, port in rules
    ]
