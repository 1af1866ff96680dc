"""The Azure side: a VNet with an OpenBSD gateway behind a static Standard public IP."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_azure_native as azure

from .site import host_cidr

# NSG rule priorities: the site's own rules, then the pair's peer rules.
SSH_PRIORITY = 100
FORWARD_PRIORITY = 110
IKE_PRIORITY = 200


@dataclass(frozen=True)
class AzureTestVmArgs:
    """A small Linux VM in the first workload subnet, to ping across the tunnel."""

    private_ip: str
    vm_size: str = "Standard_B1s"
    image_publisher: str = "Debian"
    image_offer: str = "debian-12"
    image_sku: str = "12-gen2"
    image_version: str = "latest"


@dataclass(frozen=True)
class AzureSiteArgs:
    """Everything :class:`AzureSite` builds from. CIDRs are plain strings, known at preview.

    Either create a network (``vnet_cidr``, ``gateway_subnet_cidr``, ``workload_subnet_cidrs``;
    the resource group ``resource_group_name`` is created too) or bring your own (``vnet_id``,
    ``gateway_subnet_id``, ``workload_route_table_id`` and the ``local_cidrs`` it carries, e.g.
    from ``network.get_virtual_network``): then nothing but the gateway, its public IP, NSG and
    the routes to the remote networks is created, in the existing ``resource_group_name``.
    """

    location: str
    resource_group_name: str
    remote_cidrs: Sequence[str]
    """The peer's networks: routed to the gateway, allowed through the NSGs."""
    admin_cidrs: Sequence[str]
    ssh_public_key: str
    image_id: pulumi.Input[str]
    gateway_private_ip: str | None = None
    """Fixed private IP of the gateway; None lets Azure pick one in the gateway subnet."""
    vm_size: str = "Standard_B2s"
    admin_user: str = "azure-user"
    tags: Mapping[str, str] = field(default_factory=dict)
    test_vm: AzureTestVmArgs | None = None
    # --- create a network
    vnet_cidr: str | None = None
    gateway_subnet_cidr: str | None = None
    workload_subnet_cidrs: Sequence[str] = ()
    # --- or bring your own
    vnet_id: str | None = None
    gateway_subnet_id: str | None = None
    workload_route_table_id: str | None = None
    """BYO: the route table the workload subnets already use; the routes are added to it."""
    local_cidrs: Sequence[str] = ()
    """BYO only: the networks behind the gateway (the VNet's address space)."""

    @property
    def brings_own_network(self) -> bool:
        return self.vnet_id is not None

    def mode_problems(self) -> list[str]:
        create = (self.vnet_cidr, self.gateway_subnet_cidr, tuple(self.workload_subnet_cidrs))
        byo = (self.vnet_id, self.gateway_subnet_id, self.workload_route_table_id, tuple(self.local_cidrs))
        if self.brings_own_network:
            problems = [] if all(byo) else [
                "vnet_id needs gateway_subnet_id, workload_route_table_id and local_cidrs"]
            if any(create):
                problems.append("vnet_id (bring your own) cannot go with vnet_cidr/gateway_subnet_cidr/"
                                "workload_subnet_cidrs (create)")
            if self.test_vm is not None:
                problems.append("test_vm needs a created network (no workload subnet is known with vnet_id)")
            return problems
        return [] if all(create) else [
            "set vnet_cidr, gateway_subnet_cidr and workload_subnet_cidrs, or vnet_id"]


def resource_id_part(resource_id: str, kind: str) -> str:
    """The name after ``/<kind>/`` in an Azure resource id (``resourceGroups``, ``routeTables``)."""
    parts = resource_id.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    try:
        return parts[lowered.index(kind.lower()) + 1]
    except (ValueError, IndexError):
        raise ValueError(f"{resource_id!r} is not an Azure resource id with /{kind}/<name>") from None


class AzureSite(pulumi.ComponentResource):
    """Resource group, VNet, subnets, NSGs, route table, public IP, NIC and the OpenBSD VM."""

    site: str = "azure"
    admin_user: str
    public_ip: pulumi.Output[str]
    gateway_private_ip: pulumi.Output[str]
    cidrs: pulumi.Output[list[str]]
    vm_id: pulumi.Output[str]
    resource_group_name: pulumi.Output[str]
    gateway_nsg_name: pulumi.Output[str]
    test_vm_private_ip: pulumi.Output[str | None]
    gateway: pulumi.Resource

    def __init__(self, name: str, args: AzureSiteArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cross-cloud-vpn:azure:Site", name, None, opts)
        problems = args.mode_problems()
        if problems:
            raise ValueError(f"AzureSite {name}: {'; '.join(problems)}")
        child = pulumi.ResourceOptions(parent=self)
        self.admin_user = args.admin_user
        tags = dict(args.tags)
        location = args.location
        local_cidrs = list(args.local_cidrs or args.workload_subnet_cidrs)

        rg_name: pulumi.Input[str] = args.resource_group_name
        if not args.brings_own_network:
            rg_name = azure.resources.ResourceGroup(
                f"{name}-rg", resource_group_name=args.resource_group_name, location=location, tags=tags,
                opts=child,
            ).name
        self._rg_name = rg_name

        # The gateway's NSG sits on its NIC, so it also works in a subnet that is not ours.
        gateway_nsg = azure.network.NetworkSecurityGroup(
            f"{name}-gateway-nsg", resource_group_name=rg_name, location=location, tags=tags, opts=child
        )
        self._nsg_name = gateway_nsg.name
        self._rule(f"{name}-ssh", SSH_PRIORITY, "Tcp", list(args.admin_cidrs), "22",
                   "SSH from the admin networks", child)
        self._rule(f"{name}-forward", FORWARD_PRIORITY, "*", [*local_cidrs, *args.remote_cidrs], "*",
                   "traffic the gateway forwards between the sites", child)

        if args.brings_own_network:
            gateway_subnet_id: pulumi.Input[str] = args.gateway_subnet_id or ""
            table_id = args.workload_route_table_id or ""
            route_rg: pulumi.Input[str] = resource_id_part(table_id, "resourceGroups")
            route_table_name: pulumi.Input[str] = resource_id_part(table_id, "routeTables")
            workload_subnet_ids: list[pulumi.Output[str]] = []
        else:
            gateway_subnet_id, route_table_name, workload_subnet_ids = self._network(
                name, args, rg_name, tags, child
            )
            route_rg = rg_name

        public_ip = azure.network.PublicIPAddress(
            f"{name}-gateway-ip", resource_group_name=rg_name, location=location,
            sku={"name": "Standard", "tier": "Regional"}, public_ip_allocation_method="Static",
            public_ip_address_version="IPv4", tags=tags, opts=child,
        )
        ip_config: Any = {
            "name": "primary",
            "primary": True,
            "subnet": {"id": gateway_subnet_id},
            "public_ip_address": {"id": public_ip.id},
            "private_ip_allocation_method": "Static" if args.gateway_private_ip else "Dynamic",
        }
        if args.gateway_private_ip:
            ip_config["private_ip_address"] = args.gateway_private_ip
        nic = azure.network.NetworkInterface(
            f"{name}-gateway-nic", resource_group_name=rg_name, location=location,
            # The gateway forwards packets that are neither from nor to itself.
            enable_ip_forwarding=True,
            ip_configurations=[ip_config],
            network_security_group={"id": gateway_nsg.id},
            tags=tags, opts=child,
        )
        gateway_ip = nic.ip_configurations.apply(
            lambda cfgs: _require_ip(cfgs[0].private_ip_address if cfgs else None)
        )
        for i, cidr in enumerate(args.remote_cidrs):
            azure.network.Route(
                f"{name}-to-remote-{i}", resource_group_name=route_rg, route_table_name=route_table_name,
                address_prefix=cidr, next_hop_type="VirtualAppliance", next_hop_ip_address=gateway_ip,
                opts=child,
            )
        vm = self._vm(
            f"{name}-gateway", rg_name, location, args.vm_size, {"id": args.image_id}, nic.id,
            args.admin_user, args.ssh_public_key, tags,
        )

        self.test_vm_private_ip = pulumi.Output.from_input(None)
        if args.test_vm is not None:
            tv = args.test_vm
            vm_nic = azure.network.NetworkInterface(
                f"{name}-test-vm-nic", resource_group_name=rg_name, location=location,
                ip_configurations=[{
                    "name": "primary", "primary": True, "subnet": {"id": workload_subnet_ids[0]},
                    "private_ip_allocation_method": "Static", "private_ip_address": tv.private_ip,
                }],
                tags=tags, opts=child,
            )
            self._vm(
                f"{name}-test-vm", rg_name, location, tv.vm_size,
                {"publisher": tv.image_publisher, "offer": tv.image_offer, "sku": tv.image_sku,
                 "version": tv.image_version},
                vm_nic.id, args.admin_user, args.ssh_public_key, tags,
            )
            self.test_vm_private_ip = vm_nic.ip_configurations.apply(
                lambda cfgs: cfgs[0].private_ip_address if cfgs else None
            )

        self.public_ip = public_ip.ip_address.apply(_require_ip)
        self.gateway_private_ip = gateway_ip
        self.cidrs = pulumi.Output.from_input(local_cidrs)
        self.vm_id = vm.id
        self.resource_group_name = pulumi.Output.from_input(rg_name)
        self.gateway_nsg_name = gateway_nsg.name
        self.gateway = vm
        self.register_outputs(
            {
                "public_ip": self.public_ip,
                "gateway_private_ip": self.gateway_private_ip,
                "cidrs": self.cidrs,
                "vm_id": self.vm_id,
                "resource_group_name": self.resource_group_name,
                "gateway_nsg_name": self.gateway_nsg_name,
                "test_vm_private_ip": self.test_vm_private_ip,
            }
        )

    def _network(
        self, name: str, args: AzureSiteArgs, rg_name: pulumi.Input[str], tags: Mapping[str, str],
        child: pulumi.ResourceOptions,
    ) -> tuple[pulumi.Output[str], pulumi.Output[str], list[pulumi.Output[str]]]:
        """A new VNet: gateway subnet, workload subnets with their NSG and route table."""
        location = args.location
        vnet = azure.network.VirtualNetwork(
            f"{name}-vnet", resource_group_name=rg_name, location=location,
            address_space={"address_prefixes": [args.vnet_cidr or ""]}, tags=tags,
            # Subnets are separate resources below; never inline them here as well.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["subnets"]),
        )
        workload_nsg = azure.network.NetworkSecurityGroup(
            f"{name}-workload-nsg", resource_group_name=rg_name, location=location, tags=tags, opts=child
        )
        azure.network.SecurityRule(
            f"{name}-workload-from-remote", resource_group_name=rg_name,
            network_security_group_name=workload_nsg.name, priority=FORWARD_PRIORITY, direction="Inbound",
            access="Allow", protocol="*", source_address_prefixes=list(args.remote_cidrs),
            source_port_range="*", destination_address_prefix="*", destination_port_range="*",
            description="traffic from the other site through the tunnel", opts=child,
        )
        route_table = azure.network.RouteTable(
            f"{name}-workload-rt", resource_group_name=rg_name, location=location, tags=tags,
            # Routes are separate resources; never inline them here as well.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["routes"]),
        )
        # Azure serializes subnet changes per VNet: create them one after another.
        gateway_subnet = azure.network.Subnet(
            f"{name}-gateway", resource_group_name=rg_name, virtual_network_name=vnet.name,
            address_prefix=args.gateway_subnet_cidr, opts=child,
        )
        previous = gateway_subnet
        workload_ids = []
        for i, cidr in enumerate(args.workload_subnet_cidrs):
            previous = azure.network.Subnet(
                f"{name}-workload-{i}", resource_group_name=rg_name, virtual_network_name=vnet.name,
                address_prefix=cidr, route_table={"id": route_table.id},
                network_security_group={"id": workload_nsg.id},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[previous]),
            )
            workload_ids.append(previous.id)
        return gateway_subnet.id, route_table.name, workload_ids

    def _vm(
        self, name: str, rg_name: pulumi.Input[str], location: str, size: str,
        image: Mapping[str, pulumi.Input[str]], nic_id: pulumi.Input[str], user: str, ssh_key: str,
        tags: Mapping[str, str],
    ) -> azure.compute.VirtualMachine:
        ssh_keys = [{"path": f"/home/{user}/.ssh/authorized_keys", "key_data": ssh_key}]
        nics: Any = [{"id": nic_id, "primary": True, "delete_option": "Delete"}]
        storage: Any = {
            "image_reference": dict(image),
            "os_disk": {"create_option": "FromImage", "delete_option": "Delete",
                        "managed_disk": {"storage_account_type": "StandardSSD_LRS"}},
        }
        os_profile: Any = {
            "computer_name": name[:64],
            "admin_username": user,
            "linux_configuration": {
                "disable_password_authentication": True, "ssh": {"public_keys": ssh_keys},
            },
        }
        return azure.compute.VirtualMachine(
            name, resource_group_name=rg_name, location=location,
            hardware_profile={"vm_size": size},
            storage_profile=storage,
            os_profile=os_profile,
            network_profile={"network_interfaces": nics},
            diagnostics_profile={"boot_diagnostics": {"enabled": True}},
            tags=dict(tags),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _rule(
        self, name: str, priority: int, protocol: str, sources: pulumi.Input[Sequence[str]], port: str,
        description: str, opts: pulumi.ResourceOptions,
    ) -> azure.network.SecurityRule:
        return azure.network.SecurityRule(
            name, resource_group_name=self._rg_name, network_security_group_name=self._nsg_name,
            priority=priority, direction="Inbound", access="Allow", protocol=protocol,
            source_address_prefixes=sources, source_port_range="*",
            destination_address_prefix="*", destination_port_range=port, description=description,
            opts=opts,
        )

    def allow_ike_from(
        self, name: str, peer_public_ip: pulumi.Input[str], opts: pulumi.ResourceOptions
    ) -> list[pulumi.Resource]:
        peer = pulumi.Output.from_input(peer_public_ip).apply(lambda ip: [host_cidr(ip)])
        return [
            azure.network.SecurityRule(
                f"{name}-ike", resource_group_name=self._rg_name, network_security_group_name=self._nsg_name,
                priority=IKE_PRIORITY, direction="Inbound", access="Allow", protocol="Udp",
                source_address_prefixes=peer, source_port_range="*", destination_address_prefix="*",
                destination_port_ranges=["500", "4500"],
                description="IKE and NAT-T from the peer gateway only",
                opts=opts,
            ),
            self._rule(f"{name}-esp", IKE_PRIORITY + 10, "Esp", peer, "*",
                       "ESP from the peer gateway only", opts),
        ]


def _require_ip(ip: str | None) -> str:
    if not ip:
        raise ValueError("Azure returned no address for the gateway")
    return ip
