"""The Azure side: a VNet with an OpenBSD gateway behind a static Standard public IP."""

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict, cast

import pulumi
import pulumi_azure_native as azure

from .site import (
    ComponentInputError,
    GatewayEndpointArgs,
    checked_site_inputs,
    cidr_slug,
    common_site_problems,
    for_each,
    host_cidr,
    is_plain,
    joined,
    network_mode_problems,
    refuse,
)

# NSG rule priorities: the site's own rules, then the pair's peer rules.
SSH_PRIORITY = 100
FORWARD_PRIORITY = 110
IKE_PRIORITY = 200


class AzureTestVmArgs(TypedDict):
    """A small Linux VM in the first workload subnet, to ping across the tunnel."""

    private_ip: str
    """Its fixed address in the first workload subnet."""
    vm_size: NotRequired[str | None]
    """Default ``Standard_B1s``."""
    image_publisher: NotRequired[str | None]
    """Default ``Debian``."""
    image_offer: NotRequired[str | None]
    """Default ``debian-12``."""
    image_sku: NotRequired[str | None]
    """Default ``12-gen2``."""
    image_version: NotRequired[str | None]
    """Default ``latest``."""


class AzureSiteArgs(TypedDict):
    """Everything :class:`AzureSite` builds from. CIDRs are plain strings, known at preview.

    Either create a network (``vnet_cidr``, ``gateway_subnet_cidr``, ``workload_subnet_cidrs``;
    the resource group ``resource_group_name`` is created too) or bring your own (``vnet_id``,
    ``gateway_subnet_id``, ``workload_route_table_ids`` and the ``local_cidrs`` it carries, e.g.
    from ``network.get_virtual_network_output``; Outputs welcome): then nothing but the gateway,
    its public IP, NSG and the routes to the remote networks is created, in the existing
    ``resource_group_name``. Every argument is checked when the site is constructed (an Output
    as soon as it resolves).
    """

    location: str
    """The Azure region, e.g. ``westeurope``."""
    resource_group_name: str
    """Create: the group to create; bring your own: an existing group for the gateway."""
    remote_cidrs: pulumi.Input[Sequence[pulumi.Input[str]]]
    """The peer's networks: routed to the gateway, allowed through the NSGs. They must not
    overlap the local ones."""
    admin_cidrs: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Networks allowed to SSH to the gateway (your own public IP/32 at least)."""
    allow_ssh_from_anywhere: NotRequired[bool | None]
    """Needed for ``0.0.0.0/0`` in ``admin_cidrs``; default no."""
    ssh_public_key: pulumi.Input[str]
    """OpenSSH public key of the admin user: ``ssh-ed25519``, or ``ssh-rsa`` of 2048+ bits."""
    image_id: pulumi.Input[str]
    """The OpenBSD managed image or gallery image version. A new id replaces the VM (Azure
    refuses to change it in place); the NIC and its addresses stay."""
    image_specialized: NotRequired[bool | None]
    """The image is a *specialized* gallery image version: the VM is created without an OS
    profile (Azure refuses one), so the admin user and its SSH key must be in the image already.
    Default no: a *generalized* image, whose provisioning agent must report "ready"."""
    gateway_private_ip: NotRequired[str | None]
    """Fixed private IP of the gateway, inside the gateway subnet; unset lets Azure pick one."""
    vm_size: NotRequired[str | None]
    """Default ``Standard_B2s`` (a Generation 1 VM: OpenBSD's hyperv(4) does not run Generation 2)."""
    admin_user: NotRequired[pulumi.Input[str] | None]
    """User with doas on the image; default ``azure-user``."""
    tags: NotRequired[Mapping[str, str] | None]
    """Tags on every resource that takes them."""
    test_vm: NotRequired[AzureTestVmArgs | None]
    """A small Linux VM in the first workload subnet (create mode only)."""
    vnet_cidr: NotRequired[str | None]
    """Create: the VNet."""
    gateway_subnet_cidr: NotRequired[str | None]
    """Create: the gateway's subnet."""
    workload_subnet_cidrs: NotRequired[Sequence[str] | None]
    """Create: subnets routed through the tunnel."""
    vnet_id: NotRequired[pulumi.Input[str] | None]
    """Bring your own: an existing VNet."""
    gateway_subnet_id: NotRequired[pulumi.Input[str] | None]
    """Bring your own: the gateway's subnet."""
    workload_route_table_ids: NotRequired[Sequence[pulumi.Input[str]] | None]
    """Bring your own: the route tables the workload subnets already use (resource ids); a route
    per remote CIDR is added to each."""
    local_cidrs: NotRequired[pulumi.Input[Sequence[pulumi.Input[str]]] | None]
    """Bring your own: the networks behind the gateway (the VNet's address space)."""


def resource_id_part(resource_id: str, kind: str) -> str:
    """The name after ``/<kind>/`` in an Azure resource id (``resourceGroups``, ``routeTables``)."""
    parts = resource_id.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    try:
        return parts[lowered.index(kind.lower()) + 1]
    except (ValueError, IndexError):
        raise ValueError(f"{resource_id!r} is not an Azure resource id with /{kind}/<name>") from None


class AzureSite(pulumi.ComponentResource):
    """The Azure side of a tunnel: resource group, VNet (or yours), NSGs, routes, a static
    public IP, NIC and the OpenBSD VM. Join it to a peer with :class:`Ikev2GatewayPair` through
    :meth:`endpoint`."""

    site: str
    """Always "azure" (the default name of this side in a pair)."""
    admin_user: pulumi.Output[str]
    """The user with doas the bootstrap logs in as."""
    public_ip: pulumi.Output[str]
    """The static Standard public IP: the gateway's address for the peer and for SSH."""
    gateway_private_ip: pulumi.Output[str]
    """The gateway's own address (iked's ``local``; the next hop of the routes)."""
    local_cidrs: pulumi.Output[list[str]]
    """The networks behind the gateway: the created workload subnets, or ``local_cidrs``."""
    remote_cidrs: pulumi.Output[list[str]]
    """The peer's networks, routed to the gateway."""
    vm_id: pulumi.Output[str]
    """The gateway VM: a new id means a new machine, which the pair configures again."""
    resource_group_name: pulumi.Output[str]
    """The gateway's resource group."""
    gateway_nsg_name: pulumi.Output[str]
    """The gateway's NSG (the pair adds the peer-only IKE rules to it)."""
    test_vm_private_ip: pulumi.Output[str | None]
    """The test VM's address, if there is one."""
    gateway_ready: pulumi.Output[str]
    """The gateway VM's id: exists once the VM and its public IP do."""

    def __init__(self, name: str, args: AzureSiteArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Check ``args`` (every problem at once, before any child), then build the Azure side."""
        super().__init__("cross-cloud-vpn:index:AzureSite", name, None, opts)
        component = f"AzureSite {name!r}"
        mode = network_mode_problems(args, "vnet_cidr", "vnet_id", "workload_route_table_ids")
        # The layout checks need a complete network description.
        refuse(component, mode or common_site_problems(args, "vnet_cidr"))
        child = pulumi.ResourceOptions(parent=self)
        self.site = "azure"
        tags = dict(args.get("tags") or {})
        location = args["location"]
        local_cidrs, remote_cidrs, admin_cidrs, ssh_public_key, self.admin_user = checked_site_inputs(
            component, args, "vnet_cidr", default_user="azure-user"
        )

        rg_name: pulumi.Input[str] = args["resource_group_name"]
        if not args.get("vnet_id"):
            rg_name = azure.resources.ResourceGroup(
                f"{name}-rg",
                resource_group_name=args["resource_group_name"],
                location=location,
                tags=tags,
                opts=child,
            ).name
        self._rg_name = rg_name

        # The gateway's NSG sits on its NIC, so it also works in a subnet that is not ours.
        gateway_nsg = azure.network.NetworkSecurityGroup(
            f"{name}-gateway-nsg", resource_group_name=rg_name, location=location, tags=tags, opts=child
        )
        self._nsg_name = gateway_nsg.name
        # Azure takes one write at a time per NSG and per route table
        # (AnotherOperationInProgress): rules and routes are made one after another.
        ssh_rule = self._rule(
            f"{name}-ssh",
            SSH_PRIORITY,
            "Tcp",
            admin_cidrs,
            "22",
            "SSH from the admin networks",
            child,
        )
        forward_rule = self._rule(
            f"{name}-forward",
            FORWARD_PRIORITY,
            "*",
            joined(local_cidrs, remote_cidrs),
            "*",
            "traffic the gateway forwards between the sites",
            pulumi.ResourceOptions(parent=self, depends_on=[ssh_rule]),
        )

        route_tables: list[tuple[pulumi.Input[str], pulumi.Input[str]]]
        if args.get("vnet_id"):
            gateway_subnet_id: pulumi.Input[str] = args.get("gateway_subnet_id") or ""
            route_tables = [
                _route_table(component, f"workload_route_table_ids[{t}]", table_id)
                for t, table_id in enumerate(args.get("workload_route_table_ids") or [])
            ]
            workload_subnet_ids: list[pulumi.Output[str]] = []
        else:
            gateway_subnet_id, route_table_name, workload_subnet_ids = self._network(
                name, args, rg_name, remote_cidrs, tags, child
            )
            route_tables = [(rg_name, route_table_name)]

        public_ip = azure.network.PublicIPAddress(
            f"{name}-gateway-ip",
            resource_group_name=rg_name,
            location=location,
            sku={"name": "Standard", "tier": "Regional"},
            public_ip_allocation_method="Static",
            public_ip_address_version="IPv4",
            tags=tags,
            opts=child,
        )
        ip_config: Any = {
            "name": "primary",
            "primary": True,
            "subnet": {"id": gateway_subnet_id},
            "public_ip_address": {"id": public_ip.id},
            "private_ip_allocation_method": "Static" if args.get("gateway_private_ip") else "Dynamic",
        }
        if args.get("gateway_private_ip"):
            ip_config["private_ip_address"] = args.get("gateway_private_ip")
        nic = azure.network.NetworkInterface(
            f"{name}-gateway-nic",
            resource_group_name=rg_name,
            location=location,
            # The gateway forwards packets that are neither from nor to itself.
            enable_ip_forwarding=True,
            ip_configurations=[ip_config],
            network_security_group={"id": gateway_nsg.id},
            tags=tags,
            opts=child,
        )
        gateway_ip = nic.ip_configurations.apply(
            lambda cfgs: _require_ip(cfgs[0].private_ip_address if cfgs else None)
        )
        for t, (table_rg, table_name) in enumerate(route_tables):
            # One route after the other into each table (one write at a time per route table).
            previous: list[pulumi.Resource] = []

            def route(
                cidr: str, t: int = t, rg: pulumi.Input[str] = table_rg,
                table: pulumi.Input[str] = table_name, previous: list[pulumi.Resource] = previous,
            ) -> azure.network.Route:
                made = azure.network.Route(
                    f"{name}-to-{cidr_slug(cidr)}" if t == 0 else f"{name}-rt{t}-to-{cidr_slug(cidr)}",
                    resource_group_name=rg,
                    route_table_name=table,
                    address_prefix=cidr,
                    next_hop_type="VirtualAppliance",
                    next_hop_ip_address=gateway_ip,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=list(previous)),
                )
                previous[:] = [made]
                return made

            for_each(remote_cidrs, route)
        vm = self._vm(
            f"{name}-gateway",
            rg_name,
            location,
            args.get("vm_size") or "Standard_B2s",
            {"id": args["image_id"]},
            nic.id,
            None if args.get("image_specialized") else (self.admin_user, ssh_public_key),
            tags,
            # The pair adds its peer rules to this NSG once the VM exists: after the site's own.
            after=[forward_rule],
        )

        self.test_vm_private_ip = pulumi.Output.from_input(None)
        tv = args.get("test_vm")
        if tv:
            vm_nic = azure.network.NetworkInterface(
                f"{name}-test-vm-nic",
                resource_group_name=rg_name,
                location=location,
                ip_configurations=[
                    {
                        "name": "primary",
                        "primary": True,
                        "subnet": {"id": workload_subnet_ids[0]},
                        "private_ip_allocation_method": "Static",
                        "private_ip_address": tv["private_ip"],
                    }
                ],
                tags=tags,
                opts=child,
            )
            self._vm(
                f"{name}-test-vm",
                rg_name,
                location,
                tv.get("vm_size") or "Standard_B1s",
                {
                    "publisher": tv.get("image_publisher") or "Debian",
                    "offer": tv.get("image_offer") or "debian-12",
                    "sku": tv.get("image_sku") or "12-gen2",
                    "version": tv.get("image_version") or "latest",
                },
                vm_nic.id,
                (self.admin_user, ssh_public_key),
                tags,
            )
            self.test_vm_private_ip = vm_nic.ip_configurations.apply(
                lambda cfgs: cfgs[0].private_ip_address if cfgs else None
            )

        self.public_ip = public_ip.ip_address.apply(_require_ip)
        self.gateway_private_ip = gateway_ip
        self.local_cidrs = pulumi.Output.from_input(local_cidrs).apply(list)
        self.remote_cidrs = pulumi.Output.from_input(remote_cidrs).apply(list)
        self.vm_id = vm.id
        self.resource_group_name = pulumi.Output.from_input(rg_name)
        self.gateway_nsg_name = gateway_nsg.name
        self.gateway_ready = vm.id
        self.register_outputs(
            {
                "public_ip": self.public_ip,
                "gateway_private_ip": self.gateway_private_ip,
                "admin_user": self.admin_user,
                "local_cidrs": self.local_cidrs,
                "remote_cidrs": self.remote_cidrs,
                "vm_id": self.vm_id,
                "resource_group_name": self.resource_group_name,
                "gateway_nsg_name": self.gateway_nsg_name,
                "test_vm_private_ip": self.test_vm_private_ip,
                "gateway_ready": self.gateway_ready,
            }
        )

    def endpoint(self, site: str | None = None) -> GatewayEndpointArgs:
        """This gateway as :class:`Ikev2GatewayPair` takes it; ``site`` renames the side (two
        Azure sites in one pair need two names), default ``"azure"``."""
        return GatewayEndpointArgs(
            site=site or self.site,
            admin_user=self.admin_user,
            public_ip=self.public_ip,
            gateway_private_ip=self.gateway_private_ip,
            local_cidrs=self.local_cidrs,
            remote_cidrs=self.remote_cidrs,
            gateway_ready=self.gateway_ready,
            machine_id=self.vm_id,
            azure_resource_group_name=self.resource_group_name,
            azure_network_security_group_name=self.gateway_nsg_name,
            azure_provider=cast(azure.Provider | None, self.get_provider("azure-native::")),
        )

    def _network(
        self,
        name: str,
        args: AzureSiteArgs,
        rg_name: pulumi.Input[str],
        remote_cidrs: pulumi.Input[Sequence[str]],
        tags: Mapping[str, str],
        child: pulumi.ResourceOptions,
    ) -> tuple[pulumi.Output[str], pulumi.Output[str], list[pulumi.Output[str]]]:
        """A new VNet: gateway subnet, workload subnets with their NSG and route table."""
        location = args["location"]
        vnet = azure.network.VirtualNetwork(
            f"{name}-vnet",
            resource_group_name=rg_name,
            location=location,
            address_space={"address_prefixes": [args.get("vnet_cidr") or ""]},
            tags=tags,
            # Subnets are separate resources below; never inline them here as well.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["subnets"]),
        )
        workload_nsg = azure.network.NetworkSecurityGroup(
            f"{name}-workload-nsg", resource_group_name=rg_name, location=location, tags=tags, opts=child
        )
        azure.network.SecurityRule(
            f"{name}-workload-from-remote",
            resource_group_name=rg_name,
            network_security_group_name=workload_nsg.name,
            priority=FORWARD_PRIORITY,
            direction="Inbound",
            access="Allow",
            protocol="*",
            source_address_prefixes=remote_cidrs,
            source_port_range="*",
            destination_address_prefix="*",
            destination_port_range="*",
            description="traffic from the other site through the tunnel",
            opts=child,
        )
        route_table = azure.network.RouteTable(
            f"{name}-workload-rt",
            resource_group_name=rg_name,
            location=location,
            tags=tags,
            # Routes are separate resources; never inline them here as well.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["routes"]),
        )
        # Azure serializes subnet changes per VNet: create them one after another.
        gateway_subnet = azure.network.Subnet(
            f"{name}-gateway",
            resource_group_name=rg_name,
            virtual_network_name=vnet.name,
            address_prefix=args.get("gateway_subnet_cidr"),
            opts=child,
        )
        previous = gateway_subnet
        workload_ids = []
        for cidr in args.get("workload_subnet_cidrs") or []:
            previous = azure.network.Subnet(
                f"{name}-workload-{cidr_slug(cidr)}",
                resource_group_name=rg_name,
                virtual_network_name=vnet.name,
                address_prefix=cidr,
                route_table={"id": route_table.id},
                network_security_group={"id": workload_nsg.id},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[previous]),
            )
            workload_ids.append(previous.id)
        return gateway_subnet.id, route_table.name, workload_ids

    def _vm(
        self,
        name: str,
        rg_name: pulumi.Input[str],
        location: str,
        size: str,
        image: Mapping[str, pulumi.Input[str]],
        nic_id: pulumi.Input[str],
        admin: tuple[pulumi.Input[str], pulumi.Input[str]] | None,
        tags: Mapping[str, str],
        after: Sequence[pulumi.Resource] = (),
    ) -> azure.compute.VirtualMachine:
        """A VM on ``nic_id``; ``admin`` (user, SSH key) makes its OS profile, None leaves it out
        (a specialized image brings its own users and refuses one)."""
        # The NIC outlives the VM ("Detach"): a replaced VM is created on the same NIC, with the
        # same private and public address. With "Delete" it would go down with the old VM.
        nics: Any = [{"id": nic_id, "primary": True, "delete_option": "Detach"}]
        storage: Any = {
            "image_reference": dict(image),
            "os_disk": {
                "create_option": "FromImage",
                "delete_option": "Delete",
                "managed_disk": {"storage_account_type": "StandardSSD_LRS"},
            },
        }
        os_profile: Any = None
        if admin is not None:
            user, ssh_key = admin
            os_profile = {
                "computer_name": name[:64],
                "admin_username": user,
                "linux_configuration": {
                    "disable_password_authentication": True,
                    "ssh": {
                        "public_keys": [
                            {
                                "path": pulumi.Output.concat("/home/", user, "/.ssh/authorized_keys"),
                                "key_data": ssh_key,
                            }
                        ]
                    },
                },
            }
        return azure.compute.VirtualMachine(
            name,
            resource_group_name=rg_name,
            location=location,
            hardware_profile={"vm_size": size},
            storage_profile=storage,
            os_profile=os_profile,
            network_profile={"network_interfaces": nics},
            diagnostics_profile={"boot_diagnostics": {"enabled": True}},
            tags=dict(tags),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(after),
                # Azure refuses a new image on an existing VM (PropertyChangeNotAllowed,
                # pulumi-azure-native issue 1117): replace it. The NIC can serve one VM at a
                # time, so the old VM goes first.
                # The same for a new admin user or SSH key: Azure refuses to change the OS
                # profile of an existing VM (PropertyChangeNotAllowed, Azure/azure-cli#11840).
                replace_on_changes=["storageProfile.imageReference", "osProfile"],
                delete_before_replace=True,
            ),
        )

    def _rule(
        self,
        name: str,
        priority: int,
        protocol: str,
        sources: pulumi.Input[Sequence[str]],
        port: str,
        description: str,
        opts: pulumi.ResourceOptions,
    ) -> azure.network.SecurityRule:
        return _nsg_rule(
            name, self._rg_name, self._nsg_name, priority, protocol, sources, [port], description, opts
        )


def _nsg_rule(
    name: str,
    rg_name: pulumi.Input[str],
    nsg_name: pulumi.Input[str],
    priority: int,
    protocol: str,
    sources: pulumi.Input[Sequence[str]],
    ports: list[str],
    description: str,
    opts: pulumi.ResourceOptions,
) -> azure.network.SecurityRule:
    port_args: dict[str, Any] = (
        {"destination_port_range": ports[0]} if len(ports) == 1 else {"destination_port_ranges": ports}
    )
    return azure.network.SecurityRule(
        name,
        resource_group_name=rg_name,
        network_security_group_name=nsg_name,
        priority=priority,
        direction="Inbound",
        access="Allow",
        protocol=protocol,
        source_address_prefixes=sources,
        source_port_range="*",
        destination_address_prefix="*",
        description=description,
        opts=opts,
        **port_args,
    )


def azure_peer_rules(
    name: str,
    resource_group_name: pulumi.Input[str],
    nsg_name: pulumi.Input[str],
    peer_public_ip: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
    after: pulumi.Input[str] | None = None,
) -> list[pulumi.Resource]:
    """NSG rules letting IKE (udp 500, 4500) and ESP in from the peer's public IP only.

    They are written one after the other, and only once ``after`` (the site's gateway, made
    after the site's own rules) exists: Azure takes one write at a time per NSG.
    """
    peer = pulumi.Output.all(peer_public_ip, after).apply(lambda values: [host_cidr(values[0])])
    ike = _nsg_rule(
        f"{name}-ike",
        resource_group_name,
        nsg_name,
        IKE_PRIORITY,
        "Udp",
        peer,
        ["500", "4500"],
        "IKE and NAT-T from the peer gateway only",
        opts,
    )
    esp = _nsg_rule(
        f"{name}-esp",
        resource_group_name,
        nsg_name,
        IKE_PRIORITY + 10,
        "Esp",
        peer,
        ["*"],
        "ESP from the peer gateway only",
        pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[ike])),
    )
    return [ike, esp]


def _route_table(
    component: str, label: str, table_id: pulumi.Input[str]
) -> tuple[pulumi.Input[str], pulumi.Input[str]]:
    """The resource group and name of a route table from its id (known now or when it resolves)."""

    def parts(resolved: str) -> tuple[str, str]:
        try:
            return resource_id_part(resolved, "resourceGroups"), resource_id_part(resolved, "routeTables")
        except ValueError as err:
            raise ComponentInputError(f"{component}: '{label}': {err}") from None

    if is_plain(table_id):
        return parts(str(table_id))
    both = pulumi.Output.from_input(table_id).apply(parts)
    return both.apply(lambda p: p[0]), both.apply(lambda p: p[1])


def _require_ip(ip: str | None) -> str:
    if not ip:
        raise ValueError("Azure returned no address for the gateway")
    return ip
