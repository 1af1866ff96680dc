"""The AWS side: a VPC with an OpenBSD gateway behind an Elastic IP (two, in two zones, with ``ha``)."""

import json
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any, NamedTuple, NotRequired, TypedDict, cast

import pulumi
import pulumi_aws as aws

from cross_cloud_vpn import checks
from cross_cloud_vpn.openbsd.platform import DEFAULT_AWS_INSTANCE_TYPE, instance_type_problem
from cross_cloud_vpn.openbsd.probe import DEFAULT_PROBE_PORT, check_probe_port

from .site import (
    ComponentInputError,
    GatewayEndpointArgs,
    GatewayHaArgs,
    RouteTableSteeringArgs,
    checked_site_inputs,
    cidr_slug,
    common_site_problems,
    for_each,
    host_cidr,
    joined,
    labelled,
    listed,
    network_mode_problems,
    refuse,
)

#: HA defaults: private AS numbers (RFC 6996) for the gateways and the route server.
DEFAULT_HA_BGP_AS = 65010
DEFAULT_ROUTE_SERVER_AS = 65000
#: AWS takes any AS number from 1 to 4294967295 for a route server and its peers
#: (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RouteServer.html, amazonSideAsn;
#: https://docs.aws.amazon.com/vpc/latest/userguide/route-server-tutorial-create-peer.html, Peer ASN).
MAX_AS = 4294967295


class AwsTestVmArgs(TypedDict):
    """A small Linux VM in the first workload subnet, to ping across the tunnel."""

    ami_id: pulumi.Input[str]
    """Its (Linux) AMI."""
    private_ip: str
    """Its fixed address in the first workload subnet."""
    instance_type: NotRequired[str | None]
    """Default ``t3.micro``."""


class AwsHaSteering(StrEnum):
    """How the workload route tables follow the healthy gateway in HA mode."""

    ROUTE_TABLES = "route-tables"
    """$0: the gateways rewrite the routes to the remote networks themselves (EC2 ``ReplaceRoute``
    through an instance role), the standby when the primary's probe responder stops answering."""
    ROUTE_SERVER = "route-server"
    """An AWS VPC Route Server: both gateways announce the remote networks over BGP (the standby
    with a longer AS path) and the route server programs the route tables. Billed per endpoint
    hour (two endpoints here); the hourly price is not confirmed (README)."""


class AwsHaArgs(TypedDict):
    """A second gateway in a second zone, with its own public subnet, Elastic IP and tunnel.

    Gateway 1 keeps every resource of a single-gateway site; gateway 2's are named ``-gateway-2``.
    Both share the security group and key pair. Join the site to its peer through
    :meth:`AwsSite.endpoints` (one endpoint per gateway)."""

    steering: NotRequired[AwsHaSteering | None]
    """``route-tables`` (default, $0) or ``route-server``."""
    second_gateway_subnet_cidr: NotRequired[str | None]
    """Create: the second gateway's public subnet (in the second zone): inside ``vpc_cidr``, apart
    from the other subnets, /28 or larger."""
    second_gateway_subnet_id: NotRequired[pulumi.Input[str] | None]
    """Bring your own: a public subnet for the second gateway, in another zone than
    ``gateway_subnet_id``."""
    second_availability_zone: NotRequired[str | None]
    """Create: the second gateway's zone; needed (and different) when ``availability_zone`` is
    set. Default: the region's first two available zones (no Local Zones), gateway 1 in the first."""
    second_gateway_private_ip: NotRequired[str | None]
    """Fixed private IP of the second gateway, inside its subnet; unset lets AWS pick one."""
    bgp_as: NotRequired[int | None]
    """This side's private AS number (both gateways); default 65010."""
    route_server_as: NotRequired[int | None]
    """``route-server`` steering: the route server's AS number (1..4294967295, not ``bgp_as``);
    default 65000."""
    probe_port: NotRequired[int | None]
    """``route-tables`` steering: the TCP port of each gateway's health responder, which the
    other gateway probes; default 8080 (not 22, 179, 500 or 4500)."""


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
    ha: NotRequired[AwsHaArgs | None]
    """Two gateways in two zones, one tunnel each, and how the route tables follow the healthy one
    (see :class:`AwsHaArgs`); default one gateway."""


def ha_steering(ha: AwsHaArgs | None) -> AwsHaSteering | None:
    """The steering of an HA site (default ``route-tables``); None without ``ha``."""
    if ha is None:
        return None
    return AwsHaSteering(ha.get("steering") or AwsHaSteering.ROUTE_TABLES)


def whole_number_problem(label: str, value: object, low: int, high: int) -> str | None:
    """A whole number from ``low`` to ``high`` (a float like 65010.0 counts: other languages'
    integers reach a component as floats)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) \
            or not low <= value <= high:
        return f"{label} is {value!r}; use a whole number from {low} to {high}"
    return None


def probe_port_problem(label: str, port: object) -> str | None:
    """A probe port the gateway can serve (``openbsd.probe.check_probe_port``'s rule)."""
    bad = whole_number_problem(label, port, 1, 65535)
    if bad:
        return bad
    try:
        check_probe_port(int(cast(float, port)))
    except ValueError as error:
        return f"{label} is {port!r}: {error}"
    return None


def _other_steering_only(ha: AwsHaArgs, key: str, steering: str) -> list[str]:
    if ha.get(key) is None:
        return []
    return [f"'ha.{key}' is set but 'ha.steering' is {str(ha_steering(ha))!r}: it applies to "
            f"'{steering}' steering only; drop it, or set 'ha.steering' to '{steering}'"]


def ha_problems(args: Mapping[str, Any]) -> list[str]:
    """What cannot work in ``args["ha"]`` (known values; the network mode is complete)."""
    ha = args.get("ha")
    if ha is None:
        return []
    steering = ha.get("steering") or AwsHaSteering.ROUTE_TABLES
    if steering not in {s.value for s in AwsHaSteering}:
        return [f"'ha.steering' is {steering!r}; use 'route-tables' ($0: the gateways move the routes) "
                "or 'route-server' (an AWS VPC Route Server)"]
    problems = _second_subnet_problems(args, ha) if not args.get("vpc_id") else _byo_second_problems(ha)
    first_ip, second_ip = args.get("gateway_private_ip"), ha.get("second_gateway_private_ip")
    if first_ip and second_ip and first_ip == second_ip:
        problems.append(f"'ha.second_gateway_private_ip' is {second_ip!r}, the same as 'gateway_private_ip'")
    bgp_as = ha.get("bgp_as")
    bgp_as = DEFAULT_HA_BGP_AS if bgp_as is None else bgp_as
    problems += listed(whole_number_problem("'ha.bgp_as'", bgp_as, 1, MAX_AS))
    if steering == AwsHaSteering.ROUTE_SERVER:
        problems += _other_steering_only(ha, "probe_port", AwsHaSteering.ROUTE_TABLES)
        route_server_as = ha.get("route_server_as")
        route_server_as = DEFAULT_ROUTE_SERVER_AS if route_server_as is None else route_server_as
        problems += listed(whole_number_problem("'ha.route_server_as'", route_server_as, 1, MAX_AS))
        if route_server_as == bgp_as:
            problems.append(f"'ha.route_server_as' and 'ha.bgp_as' are both {bgp_as!r}: the route server "
                            "and the gateways peer over eBGP, so they need two AS numbers")
    else:
        problems += _other_steering_only(ha, "route_server_as", AwsHaSteering.ROUTE_SERVER)
        port = ha.get("probe_port")
        port = DEFAULT_PROBE_PORT if port is None else port
        problems += listed(probe_port_problem("'ha.probe_port'", port))
    return problems


def _second_subnet_problems(args: Mapping[str, Any], ha: AwsHaArgs) -> list[str]:
    """Create mode: the second gateway's subnet, zone and fixed IP."""
    problems = []
    if ha.get("second_gateway_subnet_id"):
        problems.append("'ha.second_gateway_subnet_id' is for a VPC of your own ('vpc_id'); in a created "
                        "VPC set 'ha.second_gateway_subnet_cidr'")
    label, cidr = "'ha.second_gateway_subnet_cidr'", ha.get("second_gateway_subnet_cidr") or ""
    if not cidr:
        problems.append(f"{label} is missing: the second gateway needs its own public subnet in the "
                        "created VPC (it goes in the second zone)")
    elif not (bad := checks.cidr_problem(label, cidr)):
        others = [("'gateway_subnet_cidr'", args.get("gateway_subnet_cidr") or ""),
                  *labelled("workload_subnet_cidrs", args.get("workload_subnet_cidrs") or [])]
        problems += checks.subnet_layout_problems(("'vpc_cidr'", args.get("vpc_cidr") or ""), [(label, cidr)])
        for other in others:
            problems += checks.subnet_layout_problems(None, [other, (label, cidr)])
        problems += listed(checks.gateway_subnet_problem(label, cidr))
    else:
        problems.append(bad)
    zone, second = args.get("availability_zone"), ha.get("second_availability_zone")
    if zone and not second:
        problems.append(f"'ha.second_availability_zone' is missing: with 'availability_zone' {zone!r} set, "
                        "name the second gateway's zone too (another zone of the region)")
    elif second and not zone:
        problems.append(f"'ha.second_availability_zone' is {second!r} but 'availability_zone' is not set: "
                        "name both zones, or neither (the region's first two zones)")
    elif zone and zone == second:
        problems.append(f"'ha.second_availability_zone' is {second!r}, the same as 'availability_zone': "
                        "the two gateways go in two zones, or one zone's outage takes both")
    ip = ha.get("second_gateway_private_ip")
    if ip:
        problems += listed(checks.gateway_ip_problem("'ha.second_gateway_private_ip'", ip, label, cidr)
                           if cidr else checks.address_problem("'ha.second_gateway_private_ip'", ip))
    return problems


def _byo_second_problems(ha: AwsHaArgs) -> list[str]:
    """Bring-your-own mode: the second gateway's subnet is yours, and so is its zone."""
    problems = []
    if ha.get("second_gateway_subnet_cidr"):
        problems.append("'ha.second_gateway_subnet_cidr' is for a created VPC; with 'vpc_id' set "
                        "'ha.second_gateway_subnet_id'")
    if not ha.get("second_gateway_subnet_id"):
        problems.append("'ha.second_gateway_subnet_id' is missing: with 'vpc_id', name a public subnet for "
                        "the second gateway, in another zone than 'gateway_subnet_id'")
    if ha.get("second_availability_zone"):
        problems.append(f"'ha.second_availability_zone' is {ha.get('second_availability_zone')!r} but with "
                        "'vpc_id' no subnet is created: the zone is 'ha.second_gateway_subnet_id''s own")
    ip = ha.get("second_gateway_private_ip")
    if ip:
        problems += listed(checks.address_problem("'ha.second_gateway_private_ip'", ip))
    return problems


def route_table_policy(
    partition: str, region: str, account: str, route_table_ids: Sequence[str]
) -> dict[str, Any]:
    """The route-table steering role's policy: create or replace routes in the workload route
    tables only, and read route tables (which takes no narrower resource)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "MoveTheRoutesToTheRemoteNetworks",
                "Effect": "Allow",
                "Action": ["ec2:CreateRoute", "ec2:ReplaceRoute"],
                # The route-table resource type: arn:${Partition}:ec2:${Region}:${Account}:route-table/
                # ${RouteTableId} (Service Authorization Reference, Amazon EC2,
                # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html).
                "Resource": [f"arn:{partition}:ec2:{region}:{account}:route-table/{table}"
                             for table in route_table_ids],
            },
            {
                "Sid": "FindTheRoutes",
                "Effect": "Allow",
                "Action": "ec2:DescribeRouteTables",
                # "Amazon EC2 ec2:Describe* API actions do not support resource-level permissions"
                # (EC2 User Guide, iam-policies-for-amazon-ec2.html): its Resource types column in
                # the Service Authorization Reference is empty, which means "*".
                "Resource": "*",
            },
        ],
    }


class _GatewaySpec(NamedTuple):
    """One gateway of the site: what differs between gateway 1 and gateway 2."""

    suffix: str
    """Its resources' name suffix: ``gateway``, ``gateway-2``."""
    subnet_cidr: str | None
    """Create: its public subnet."""
    zone: pulumi.Input[str] | Callable[[pulumi.Output[str]], pulumi.Output[str]] | None
    """Create: its subnet's zone (None: AWS picks; a function: chosen from gateway 1's subnet's
    zone, which it is handed)."""
    private_ip: str | None
    """Its fixed private IP, if any."""


class _Gateway(NamedTuple):
    instance: aws.ec2.Instance
    eip: aws.ec2.Eip
    association: aws.ec2.EipAssociation


class _Machine(NamedTuple):
    """What both gateways of a site share."""

    ami_id: pulumi.Input[str]
    instance_type: str
    security_group_id: pulumi.Input[str]
    key_name: pulumi.Input[str]
    instance_profile: pulumi.Input[str] | None
    internet: list[pulumi.Resource]


class AwsSite(pulumi.ComponentResource):
    """The AWS side of a tunnel: VPC (or yours), routes, security group, Elastic IP and the
    OpenBSD gateway instance (with ``ha``: two, in two zones, and their steering). Join it to a
    peer with :class:`Ikev2GatewayPair` through :meth:`endpoint` (:meth:`endpoints` with ``ha``)."""

    site: str
    """Always "aws" (the default name of this side in a pair)."""
    admin_user: pulumi.Output[str]
    """The user with doas the bootstrap logs in as."""
    public_ip: pulumi.Output[str]
    """The Elastic IP: the gateway's address for the peer and for SSH (gateway 1's with ``ha``)."""
    gateway_private_ip: pulumi.Output[str]
    """The gateway's own address (iked's ``local``; gateway 1's with ``ha``)."""
    local_cidrs: pulumi.Output[list[str]]
    """The networks behind the gateway: the created workload subnets, or ``local_cidrs``."""
    remote_cidrs: pulumi.Output[list[str]]
    """The peer's networks, routed to the gateway."""
    instance_id: pulumi.Output[str]
    """The gateway instance: a new id means a new machine, which the pair configures again
    (gateway 1's with ``ha``)."""
    vpc_id: pulumi.Output[str]
    """The VPC: created, or yours."""
    security_group_id: pulumi.Output[str]
    """The gateways' security group (the pair adds the peer-only IKE rules to it)."""
    test_vm_private_ip: pulumi.Output[str | None]
    """The test VM's address, if there is one."""
    gateway_ready: pulumi.Output[str]
    """The Elastic IP association: exists once the gateway is reachable at ``public_ip``
    (gateway 1's with ``ha``)."""
    gateway_public_ips: pulumi.Output[list[str]]
    """Every gateway's Elastic IP, gateway 1 first (one without ``ha``)."""
    gateway_private_ips: pulumi.Output[list[str]]
    """Every gateway's own address, gateway 1 first."""
    instance_ids: pulumi.Output[list[str]]
    """Every gateway instance, gateway 1 first."""
    gateways_ready: pulumi.Output[list[str]]
    """Every gateway's Elastic IP association, gateway 1 first."""
    route_server_addresses: pulumi.Output[list[str]]
    """``route-server`` steering: the route server endpoint in each gateway's subnet (the one
    that gateway peers with), gateway 1 first; empty otherwise."""

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
            *([] if mode else ha_problems(args)),
        ])
        child = pulumi.ResourceOptions(parent=self)
        self.site = "aws"
        self._component = component
        tags = dict(args.get("tags") or {})
        local_cidrs, remote_cidrs, admin_cidrs, ssh_public_key, self.admin_user = checked_site_inputs(
            component, args, "vpc_cidr", default_user="ec2-user"
        )
        ha = args.get("ha")
        steering = ha_steering(ha)

        def tagged(suffix: str) -> dict[str, str]:
            return {**tags, "Name": f"{name}-{suffix}"}

        specs = self._gateway_specs(component, args)
        internet: list[pulumi.Resource] = []
        if args.get("vpc_id"):
            vpc_id: pulumi.Input[str] = args.get("vpc_id") or ""
            subnet_ids: list[pulumi.Input[str]] = [args.get("gateway_subnet_id") or ""]
            if ha is not None:
                subnet_ids.append(ha.get("second_gateway_subnet_id") or "")
            workload_route_table_ids: list[pulumi.Input[str]] = list(
                args.get("workload_route_table_ids") or []
            )
            workload_subnet_ids: list[pulumi.Output[str]] = []
        else:
            vpc_id, subnet_ids, workload_route_table_ids, workload_subnet_ids, igw = self._network(
                name, args, specs, tagged, child
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
        region: pulumi.Output[str] | None = None
        profile: pulumi.Output[str] | None = None
        if steering == AwsHaSteering.ROUTE_TABLES:
            region, profile = self._route_table_role(name, workload_route_table_ids, tagged, child)
        machine = _Machine(args["ami_id"], instance_type, sg.id, key.key_name, profile, internet)
        gateways = [
            self._gateway(name, spec, subnet_id, machine, tagged)
            for spec, subnet_id in zip(specs, subnet_ids, strict=True)
        ]

        route_opts = child
        if steering == AwsHaSteering.ROUTE_TABLES:
            # The gateways move these routes themselves (ReplaceRoute): a later `pulumi up` or
            # refresh must keep the target they set, not put gateway 1 back.
            route_opts = pulumi.ResourceOptions(parent=self, ignore_changes=["networkInterfaceId"])
        if steering != AwsHaSteering.ROUTE_SERVER:
            # With a route server there is no static route: it would fight the propagated ones.
            for t, table_id in enumerate(workload_route_table_ids):
                for_each(
                    remote_cidrs,
                    lambda cidr, t=t, table_id=table_id: aws.ec2.Route(  # type: ignore[misc]
                        f"{name}-to-{cidr_slug(cidr)}" if t == 0 else f"{name}-rt{t}-to-{cidr_slug(cidr)}",
                        route_table_id=table_id,
                        destination_cidr_block=cidr,
                        network_interface_id=gateways[0].instance.primary_network_interface_id,
                        opts=route_opts,
                    ),
                )

        addresses: list[pulumi.Output[str]] = []
        self._ha: list[GatewayHaArgs] = []
        if ha is not None:
            bgp_as = int(ha.get("bgp_as") or DEFAULT_HA_BGP_AS)
            private_ips = [g.instance.private_ip for g in gateways]
            if steering == AwsHaSteering.ROUTE_SERVER:
                route_server_as = int(ha.get("route_server_as") or DEFAULT_ROUTE_SERVER_AS)
                addresses = self._route_server(
                    name, route_server_as, bgp_as, vpc_id, specs, subnet_ids, private_ips,
                    workload_route_table_ids, sg.id, tagged, child,
                )
                self._ha = [
                    GatewayHaArgs(bgp_as=bgp_as, standby=i > 0, route_server_addresses=[address],
                                  route_server_as=route_server_as)
                    for i, address in enumerate(addresses)
                ]
            else:
                probe_port = int(ha.get("probe_port") or DEFAULT_PROBE_PORT)
                # Each gateway asks the other's probe responder whether it is healthy.
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-probe",
                    security_group_id=sg.id,
                    ip_protocol="tcp",
                    from_port=probe_port,
                    to_port=probe_port,
                    referenced_security_group_id=sg.id,
                    description="health probe between the two gateways (route-table steering)",
                    opts=child,
                )
                self._ha = [
                    GatewayHaArgs(bgp_as=bgp_as, standby=i > 0, probe_port=probe_port,
                                  route_tables=RouteTableSteeringArgs(
                                      region=cast(pulumi.Output[str], region),
                                      route_table_ids=workload_route_table_ids,
                                      partner_private_ip=private_ips[1 - i]))
                    for i in range(len(gateways))
                ]

        self.test_vm_private_ip = pulumi.Output.from_input(None)
        test_vm = args.get("test_vm")
        if test_vm:
            self.test_vm_private_ip = self._test_vm(
                name,
                test_vm,
                vpc_id,
                workload_subnet_ids[0],
                key.key_name,
                joined([spec.subnet_cidr or "" for spec in specs], forwarded),
                tagged,
                child,
            )

        self._gateways = gateways
        self.public_ip = gateways[0].eip.public_ip
        self.gateway_private_ip = gateways[0].instance.private_ip
        self.local_cidrs = pulumi.Output.from_input(local_cidrs).apply(list)
        self.remote_cidrs = pulumi.Output.from_input(remote_cidrs).apply(list)
        self.instance_id = gateways[0].instance.id
        self.vpc_id = pulumi.Output.from_input(vpc_id)
        self.security_group_id = sg.id
        self.gateway_ready = gateways[0].association.id
        self.gateway_public_ips = pulumi.Output.all(*[g.eip.public_ip for g in gateways]).apply(list)
        self.gateway_private_ips = pulumi.Output.all(*[g.instance.private_ip for g in gateways]).apply(list)
        self.instance_ids = pulumi.Output.all(*[g.instance.id for g in gateways]).apply(list)
        self.gateways_ready = pulumi.Output.all(*[g.association.id for g in gateways]).apply(list)
        self.route_server_addresses = pulumi.Output.all(*addresses).apply(list)
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
                "gateway_public_ips": self.gateway_public_ips,
                "gateway_private_ips": self.gateway_private_ips,
                "instance_ids": self.instance_ids,
                "gateways_ready": self.gateways_ready,
                "route_server_addresses": self.route_server_addresses,
            }
        )

    def endpoint(self, site: str | None = None) -> GatewayEndpointArgs:
        """This gateway as :class:`Ikev2GatewayPair` takes it; ``site`` renames the side (two AWS
        sites in one pair need two names), default ``"aws"``. A site with ``ha`` has two
        gateways: use :meth:`endpoints`."""
        if self._ha:
            raise ComponentInputError(
                f"{self._component} has two gateways ('ha'): take site.endpoints(), one endpoint per "
                "gateway (one pair each), instead of site.endpoint()"
            )
        return self._endpoint(0, site or self.site)

    def endpoints(self, site: str | None = None) -> list[GatewayEndpointArgs]:
        """Every gateway as :class:`Ikev2GatewayPair` takes it, gateway 1 first: with ``ha`` two,
        named ``<site>-1`` and ``<site>-2`` (``site`` default ``"aws"``), each with its ``ha``
        part (gateway 2 the standby); without, ``[endpoint(site)]``."""
        if not self._ha:
            return [self.endpoint(site)]
        prefix = site or self.site
        return [self._endpoint(i, f"{prefix}-{i + 1}") for i in range(len(self._gateways))]

    def _endpoint(self, index: int, site: str) -> GatewayEndpointArgs:
        gateway = self._gateways[index]
        endpoint = GatewayEndpointArgs(
            site=site,
            admin_user=self.admin_user,
            public_ip=gateway.eip.public_ip,
            gateway_private_ip=gateway.instance.private_ip,
            local_cidrs=self.local_cidrs,
            remote_cidrs=self.remote_cidrs,
            gateway_ready=gateway.association.id,
            machine_id=gateway.instance.id,
            aws_security_group_id=self.security_group_id,
            aws_provider=cast(aws.Provider | None, self.get_provider("aws::")),
        )
        if self._ha:
            endpoint["ha"] = self._ha[index]
        return endpoint

    def _gateway_specs(self, component: str, args: AwsSiteArgs) -> list[_GatewaySpec]:
        """Gateway 1 (every name and input of a single-gateway site) and, with ``ha``, gateway 2."""
        zone: pulumi.Input[str] | None = args.get("availability_zone")
        first = _GatewaySpec("gateway", args.get("gateway_subnet_cidr"), zone, args.get("gateway_private_ip"))
        ha = args.get("ha")
        if ha is None:
            return [first]
        second_zone: pulumi.Input[str] | Callable[[pulumi.Output[str]], pulumi.Output[str]] | None = (
            ha.get("second_availability_zone")
        )
        if not zone and not args.get("vpc_id"):
            # Gateway 1's subnet keeps the zone AWS picked for it (as in single mode, so turning
            # HA on does not replace it); gateway 2 goes to another one of the region's zones.
            second_zone = lambda first_zone: self._zone_apart(component, first_zone)  # noqa: E731
        return [
            first,
            _GatewaySpec("gateway-2", ha.get("second_gateway_subnet_cidr"), second_zone,
                         ha.get("second_gateway_private_ip")),
        ]

    def _zone_apart(self, component: str, first_zone: pulumi.Output[str]) -> pulumi.Output[str]:
        """The first of the region's available Availability Zones that is not ``first_zone``,
        through the site's provider."""
        zones = aws.get_availability_zones_output(
            state="available",
            # Availability Zones only, no Local Zones (the provider's "Only Availability Zones"
            # example: help(aws.get_availability_zones)).
            filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
            opts=pulumi.InvokeOutputOptions(parent=self),
        )

        def apart(values: list[Any]) -> str:
            names, taken = list(values[0] or []), values[1]
            others = [n for n in names if n != taken]
            if len(names) < 2 or not others:
                refuse(component, [
                    f"'ha' needs two Availability Zones but the region has {names!r}; "
                    "pick a region with two, or set 'availability_zone' and 'ha.second_availability_zone'"
                ])
            return str(others[0])

        return pulumi.Output.all(zones.names, first_zone).apply(apart)

    def _gateway(
        self,
        name: str,
        spec: _GatewaySpec,
        subnet_id: pulumi.Input[str],
        machine: _Machine,
        tagged: Callable[[str], dict[str, str]],
    ) -> _Gateway:
        """One gateway: the instance, its Elastic IP and their association."""
        instance = aws.ec2.Instance(
            f"{name}-{spec.suffix}",
            ami=machine.ami_id,
            instance_type=machine.instance_type,
            subnet_id=subnet_id,
            private_ip=spec.private_ip,
            vpc_security_group_ids=[machine.security_group_id],
            key_name=machine.key_name,
            iam_instance_profile=machine.instance_profile,
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
            tags=tagged(spec.suffix),
            # A fixed private IP is still taken while the old machine exists
            # (InvalidIPAddress.InUse): delete it first.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=bool(spec.private_ip)),
        )
        # An Elastic IP needs the internet gateway attached first (Gateway.NotAttached).
        eip = aws.ec2.Eip(
            f"{name}-{spec.suffix}",
            domain="vpc",
            tags=tagged(spec.suffix),
            opts=pulumi.ResourceOptions(parent=self, depends_on=machine.internet),
        )
        association = aws.ec2.EipAssociation(
            f"{name}-{spec.suffix}",
            allocation_id=eip.allocation_id,
            instance_id=instance.id,
            # The address is still associated with the old machine (Resource.AlreadyAssociated).
            opts=pulumi.ResourceOptions(parent=self, depends_on=machine.internet, delete_before_replace=True),
        )
        return _Gateway(instance, eip, association)

    def _route_server(
        self,
        name: str,
        route_server_as: int,
        bgp_as: int,
        vpc_id: pulumi.Input[str],
        specs: list[_GatewaySpec],
        subnet_ids: list[pulumi.Input[str]],
        private_ips: list[pulumi.Output[str]],
        route_table_ids: list[pulumi.Input[str]],
        security_group_id: pulumi.Input[str],
        tagged: Callable[[str], dict[str, str]],
        child: pulumi.ResourceOptions,
    ) -> list[pulumi.Output[str]]:
        """A VPC Route Server that programs the workload route tables from what the gateways
        announce: an endpoint in each gateway's subnet, that gateway as its peer. Returns each
        gateway's endpoint address."""
        route_server = aws.vpc.RouteServer(
            f"{name}-rs",
            amazon_side_asn=route_server_as,
            # "enable" keeps the routes when every BGP session has ended (both gateways down,
            # API_RouteServer persistRoutes): remote-bound traffic then still goes to a gateway and
            # is dropped there, instead of falling through to a less specific route (a default
            # route to a NAT or internet gateway in a VPC of your own). 1 minute, the shortest wait
            # after a session is back before the persisted routes go (persistRoutesDuration 1-5).
            persist_routes="enable",
            persist_routes_duration=1,
            tags=tagged("rs"),
            opts=child,
        )
        # Endpoints and propagations need the route server associated with the VPC first (the
        # provider's "Complete Configuration" example: help(aws.vpc.RouteServerPeer)).
        association = aws.vpc.RouteServerVpcAssociation(
            f"{name}-rs", route_server_id=route_server.route_server_id, vpc_id=vpc_id, opts=child
        )
        after_association = pulumi.ResourceOptions(parent=self, depends_on=[association])
        addresses = []
        for spec, subnet_id, private_ip in zip(specs, subnet_ids, private_ips, strict=True):
            endpoint = aws.vpc.RouteServerEndpoint(
                f"{name}-rs-{spec.suffix}",
                route_server_id=route_server.route_server_id,
                subnet_id=subnet_id,
                tags=tagged(f"rs-{spec.suffix}"),
                opts=after_association,
            )
            aws.vpc.RouteServerPeer(
                f"{name}-rs-{spec.suffix}",
                route_server_endpoint_id=endpoint.route_server_endpoint_id,
                peer_address=private_ip,
                # OpenBGPD has no BFD (no such keyword in bgpd.conf(5)): the BGP hold time it is.
                bgp_options={"peer_asn": bgp_as, "peer_liveness_detection": "bgp-keepalive"},
                tags=tagged(f"rs-{spec.suffix}"),
                opts=child,
            )
            # The gateway opens the session ("The route server endpoint does not initiate the BGP
            # session", route-server-tutorial-initiate-bgp.html), so its replies pass by the
            # group's connection tracking; this rule keeps BGP working if the endpoint ever does.
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-bgp-{spec.suffix}",
                security_group_id=security_group_id,
                ip_protocol="tcp",
                from_port=179,
                to_port=179,
                cidr_ipv4=endpoint.eni_address.apply(host_cidr),
                description=f"BGP from the route server endpoint in the subnet of {spec.suffix}",
                opts=child,
            )
            addresses.append(endpoint.eni_address)
        for t, table_id in enumerate(route_table_ids):
            aws.vpc.RouteServerPropagation(
                f"{name}-rs-rt{t}",
                route_server_id=route_server.route_server_id,
                route_table_id=table_id,
                opts=after_association,
            )
        return addresses

    def _route_table_role(
        self,
        name: str,
        route_table_ids: list[pulumi.Input[str]],
        tagged: Callable[[str], dict[str, str]],
        child: pulumi.ResourceOptions,
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """The gateways' instance role for route-table steering: move the routes in the workload
        route tables, and nothing else. Returns the region and the instance profile's name."""
        invoke = pulumi.InvokeOutputOptions(parent=self)
        region = aws.get_region_output(opts=invoke).region
        account = aws.get_caller_identity_output(opts=invoke).account_id
        partition = aws.get_partition_output(opts=invoke).partition
        role = aws.iam.Role(
            f"{name}-gateway",
            assume_role_policy=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                               "Action": "sts:AssumeRole"}],
            }),
            description="cross-cloud-vpn HA gateways: route the remote networks to the healthy one",
            tags=tagged("gateway"),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-gateway-routes",
            role=role.id,
            policy=pulumi.Output.all(partition, region, account, *route_table_ids).apply(
                lambda v: json.dumps(route_table_policy(v[0], v[1], v[2], v[3:]))
            ),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(
            f"{name}-gateway", role=role.name, tags=tagged("gateway"), opts=child
        )
        return region, profile.name

    def _network(
        self,
        name: str,
        args: AwsSiteArgs,
        specs: list[_GatewaySpec],
        tagged: Callable[[str], dict[str, str]],
        child: pulumi.ResourceOptions,
    ) -> tuple[
        pulumi.Output[str],
        list[pulumi.Input[str]],
        list[pulumi.Input[str]],
        list[pulumi.Output[str]],
        pulumi.Resource,
    ]:
        """A new VPC: internet gateway, a public subnet per gateway, workload subnets and their
        route table."""
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.get("vpc_cidr"),
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags=tagged("vpc"),
            opts=child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tagged("igw"), opts=child)
        gateway_subnets: list[aws.ec2.Subnet] = []
        for spec in specs:
            zone = spec.zone(gateway_subnets[0].availability_zone) if callable(spec.zone) else spec.zone
            gateway_subnets.append(aws.ec2.Subnet(
                f"{name}-{spec.suffix}",
                vpc_id=vpc.id,
                cidr_block=spec.subnet_cidr,
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags=tagged(spec.suffix),
                opts=child,
            ))
        public_rt = aws.ec2.RouteTable(f"{name}-public", vpc_id=vpc.id, tags=tagged("public"), opts=child)
        aws.ec2.Route(
            f"{name}-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )
        for spec, subnet in zip(specs, gateway_subnets, strict=True):
            aws.ec2.RouteTableAssociation(
                f"{name}-{spec.suffix}", subnet_id=subnet.id, route_table_id=public_rt.id, opts=child
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
        return vpc.id, [s.id for s in gateway_subnets], [workload_rt.id], subnet_ids, igw

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
