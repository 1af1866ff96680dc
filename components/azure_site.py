"""The Azure side: a VNet with an OpenBSD gateway behind a static Standard public IP, or (HA
mode) two gateways in two availability zones behind an internal Standard Load Balancer."""

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, NotRequired, TypedDict, cast

import pulumi
import pulumi_azure_native as azure

from cross_cloud_vpn import checks
from cross_cloud_vpn.openbsd.probe import DEFAULT_PROBE_FILE, DEFAULT_PROBE_PORT, check_probe_port

from .site import (
    ComponentInputError,
    GatewayEndpointArgs,
    GatewayHaArgs,
    checked_site_inputs,
    cidr_slug,
    common_site_problems,
    for_each,
    host_cidr,
    is_plain,
    joined,
    listed,
    network_mode_problems,
    refuse,
)

# NSG rule priorities: the site's own rules, then the pair's peer rules.
SSH_PRIORITY = 100
FORWARD_PRIORITY = 110
PROBE_PRIORITY = 120
IKE_PRIORITY = 200

#: HA defaults (see :class:`AzureHaArgs`).
DEFAULT_HA_ZONES = ("1", "2")
#: Azure's shortest probe interval: "The default value is 15, the minimum value is 5"
#: (Azure REST API, network Probe ``intervalInSeconds``).
MIN_PROBE_INTERVAL = 5
#: One failed probe takes a gateway out: what it answers (its tunnel's BGP session is up) is
#: debounced already by the session's hold time, and a gateway taken out by mistake only sends its
#: new flows through the other one. Failover is then about one interval (research/ha.md 1b).
DEFAULT_PROBE_THRESHOLD = 1
DEFAULT_AZURE_BGP_AS = 65020
#: Azure's logical availability zones in a region that has them.
AZURE_ZONES = ("1", "2", "3")
#: The service tag of the address every load-balancer health probe comes from (168.63.129.16).
AZURE_LOAD_BALANCER_TAG = "AzureLoadBalancer"


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


class AzureHaArgs(TypedDict):
    """HA mode: a second gateway in another availability zone, both behind an internal Standard
    Load Balancer whose HA-ports rule is the next hop of the routes to the remote networks.

    Each gateway answers the balancer's HTTP health probe (``GET /up`` on its private IP and
    ``probe_port``) only while its own tunnel's BGP session is up, so the balancer sends new flows
    only through gateways whose tunnel works. Join each gateway to its own peer gateway through
    :meth:`AzureSite.endpoints`. Needs ``gateway_private_ip`` (the first gateway)."""

    second_gateway_private_ip: str
    """Fixed private IP of the second gateway, in the gateway subnet, apart from the first."""
    load_balancer_private_ip: str
    """The balancer's frontend: a static private IP in the gateway subnet, apart from both
    gateways; the next hop of the workload routes to the remote networks."""
    zones: NotRequired[Sequence[str] | None]
    """The availability zones of the first and the second gateway (two different ones of "1",
    "2", "3"; the region must have zones); default ``["1", "2"]``."""
    probe_port: NotRequired[int | None]
    """The TCP port of each gateway's probe responder (httpd); default 8080. Not 22, 179, 500
    or 4500, which the gateway already uses."""
    probe_interval_seconds: NotRequired[int | None]
    """Seconds between two probes of a gateway; default 5, Azure's minimum."""
    probe_threshold: NotRequired[int | None]
    """Consecutive failed (or answered) probes that take a gateway out of (or back into) the
    balancer's rotation; default 1. A gateway whose tunnel fails stops getting new flows after
    about ``probe_interval_seconds`` x ``probe_threshold`` seconds."""
    bgp_as: NotRequired[int | None]
    """This side's private AS number for the BGP sessions through the tunnels; default 65020."""


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
    ha: NotRequired[AzureHaArgs | None]
    """HA mode: two gateways in two zones behind an internal load balancer (create or bring your
    own network); unset, one gateway. Set on an existing site, it replaces the first gateway's VM
    and public IP (a new address: Azure moves neither into a zone); its NIC stays."""


def resource_id_part(resource_id: str, kind: str) -> str:
    """The name after ``/<kind>/`` in an Azure resource id (``resourceGroups``, ``routeTables``)."""
    parts = resource_id.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    try:
        return parts[lowered.index(kind.lower()) + 1]
    except (ValueError, IndexError):
        raise ValueError(f"{resource_id!r} is not an Azure resource id with /{kind}/<name>") from None


def _resource_group_id(resource_id: str) -> str:
    """The id of the resource group that holds the resource ``resource_id`` names."""
    return resource_id[: resource_id.lower().index("/providers/")]


def _whole(value: object, default: int) -> int:
    """A whole number of an HA argument (an integer may arrive as a float from a YAML or
    TypeScript program), ``default`` when unset; checked by :func:`ha_problems`."""
    return default if value is None else int(cast(float, value))


def _whole_problem(label: str, value: object, least: int, most: int) -> str | None:
    whole = isinstance(value, int | float) and not isinstance(value, bool) and value == int(value)
    if not whole or not least <= int(cast(float, value)) <= most:
        return f"{label} is {value!r}, not a whole number from {least} to {most}"
    return None


def ha_problems(args: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``ha`` (:class:`AzureHaArgs`), checked at construction with the rest."""
    ha = args.get("ha")
    if not ha:
        return []
    problems: list[str] = []
    first = args.get("gateway_private_ip")
    if not first:
        problems.append("'ha' needs 'gateway_private_ip' (the first gateway's fixed address) as well as "
                        "'ha.second_gateway_private_ip'")
    subnet = args.get("gateway_subnet_cidr")
    addresses = [("'gateway_private_ip'", first)] if first and is_plain(first) else []
    for key in ("second_gateway_private_ip", "load_balancer_private_ip"):
        label, value = f"'ha.{key}'", ha.get(key)
        if not value:
            problems.append(f"{label} is missing: a fixed address in the gateway subnet")
            continue
        bad = (checks.gateway_ip_problem(label, value, "'gateway_subnet_cidr'", subnet) if subnet
               else checks.address_problem(label, value))
        problems += listed(bad)
        addresses += [] if bad else [(label, value)]
    for i, (label, value) in enumerate(addresses):
        problems += [f"{label} is {value!r}, the same address as {other}" for other, seen in addresses[:i]
                     if not checks.address_problem(other, seen)
                     and ipaddress.IPv4Address(seen) == ipaddress.IPv4Address(value)]
    zones = ha.get("zones")
    if zones is not None:
        two_zones = isinstance(zones, list | tuple) and len(zones) == 2 and zones[0] != zones[1]
        if not (two_zones and all(zone in AZURE_ZONES for zone in zones)):
            problems.append(f"'ha.zones' is {zones!r}: name two different availability zones of "
                            f"{', '.join(repr(z) for z in AZURE_ZONES)}, one per gateway, "
                            f"e.g. {list(DEFAULT_HA_ZONES)!r}")
    port = ha.get("probe_port")
    if port is not None:
        bad = _whole_problem("'ha.probe_port'", port, 1, 65535)
        if not bad:
            try:
                check_probe_port(int(port))
            except ValueError as err:
                bad = f"'ha.probe_port' is {port!r}: {err}"
        problems += listed(bad)
    for key, least, most in (("probe_interval_seconds", MIN_PROBE_INTERVAL, 2147483647),
                             ("probe_threshold", 1, 2147483647), ("bgp_as", 1, 4294967295)):
        if ha.get(key) is not None:
            problems += listed(_whole_problem(f"'ha.{key}'", ha.get(key), least, most))
    return problems


class _Gateway(NamedTuple):
    """One gateway of the site as its endpoint needs it."""

    public_ip: pulumi.Output[str]
    private_ip: pulumi.Output[str]
    vm_id: pulumi.Output[str]
    nsg_name: pulumi.Output[str]


class AzureSite(pulumi.ComponentResource):
    """The Azure side of a tunnel: resource group, VNet (or yours), NSGs, routes, a static
    public IP, NIC and the OpenBSD VM (with ``ha``: two of each, in two zones, behind an internal
    load balancer). Join it to a peer with :class:`Ikev2GatewayPair` through :meth:`endpoint`
    (HA mode: one pair per gateway, through :meth:`endpoints`)."""

    site: str
    """Always "azure" (the default name of this side in a pair)."""
    admin_user: pulumi.Output[str]
    """The user with doas the bootstrap logs in as."""
    public_ip: pulumi.Output[str]
    """The static Standard public IP: the gateway's address for the peer and for SSH (HA mode:
    the first gateway's)."""
    gateway_private_ip: pulumi.Output[str]
    """The gateway's own address (iked's ``local``; without ``ha``, the next hop of the routes).
    HA mode: the first gateway's."""
    local_cidrs: pulumi.Output[list[str]]
    """The networks behind the gateway: the created workload subnets, or ``local_cidrs``."""
    remote_cidrs: pulumi.Output[list[str]]
    """The peer's networks, routed to the gateway."""
    vm_id: pulumi.Output[str]
    """The gateway VM: a new id means a new machine, which the pair configures again (HA mode:
    the first gateway's)."""
    resource_group_name: pulumi.Output[str]
    """The gateway's resource group."""
    gateway_nsg_name: pulumi.Output[str]
    """The gateway's NSG (the pair adds the peer-only IKE rules to it; HA mode: the first
    gateway's)."""
    test_vm_private_ip: pulumi.Output[str | None]
    """The test VM's address, if there is one."""
    gateway_ready: pulumi.Output[str]
    """The gateway VM's id: exists once the VM and its public IP do."""
    gateway_public_ips: pulumi.Output[list[str]]
    """Every gateway's public IP, first gateway first (one without ``ha``)."""
    gateway_private_ips: pulumi.Output[list[str]]
    """Every gateway's private IP, first gateway first."""
    vm_ids: pulumi.Output[list[str]]
    """Every gateway VM's id, first gateway first."""
    gateway_nsg_names: pulumi.Output[list[str]]
    """Every gateway's own NSG, first gateway first (the pair of each gateway adds its peer's
    IKE rules there)."""
    load_balancer_private_ip: pulumi.Output[str | None]
    """HA mode: the internal load balancer's frontend, the next hop of the routes; else None."""

    def __init__(self, name: str, args: AzureSiteArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Check ``args`` (every problem at once, before any child), then build the Azure side."""
        super().__init__("cross-cloud-vpn:index:AzureSite", name, None, opts)
        component = f"AzureSite {name!r}"
        self._component = component
        mode = network_mode_problems(args, "vnet_cidr", "vnet_id", "workload_route_table_ids")
        # The layout checks need a complete network description.
        refuse(component, mode or [*common_site_problems(args, "vnet_cidr"), *ha_problems(args)])
        child = pulumi.ResourceOptions(parent=self)
        self.site = "azure"
        tags = dict(args.get("tags") or {})
        location = args["location"]
        local_cidrs, remote_cidrs, admin_cidrs, ssh_public_key, self.admin_user = checked_site_inputs(
            component, args, "vnet_cidr", default_user="azure-user"
        )
        ha = args.get("ha")
        self._ha = ha
        zones: Sequence[str | None] = list(ha.get("zones") or DEFAULT_HA_ZONES) if ha else [None]
        fixed_ips = [args.get("gateway_private_ip"), ha["second_gateway_private_ip"]] if ha else [
            args.get("gateway_private_ip")
        ]
        probe_port = _whole(ha.get("probe_port"), DEFAULT_PROBE_PORT) if ha else None
        # The first gateway keeps the names of a single-gateway site; the second is "-2".
        suffixes = ["", "-2"] if ha else [""]

        rg_name: pulumi.Input[str] = args["resource_group_name"]
        if not args.get("vnet_id"):
            rg_name = azure.resources.ResourceGroup(
                f"{name}-rg",
                resource_group_name=args["resource_group_name"],
                location=location,
                tags=tags,
                opts=child,
            ).name

        # Each gateway has its own NSG on its NIC, so it also works in a subnet that is not ours;
        # and each gateway's pair writes its peer's IKE rules there, at the same priorities.
        forwarded = joined(local_cidrs, remote_cidrs)
        nsgs = [
            self._gateway_nsg(name, suffix, rg_name, location, tags, admin_cidrs, forwarded, probe_port)
            for suffix in suffixes
        ]

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

        pool: tuple[pulumi.Input[str], azure.network.LoadBalancer] | None = None
        if ha:
            pool = self._load_balancer(name, ha, rg_name, location, tags, gateway_subnet_id, nsgs[0][0].id)
        nics = [
            self._gateway_nic(
                f"{name}-gateway", suffix, rg_name, location, tags, gateway_subnet_id, nsg.id, ip, zone, pool
            )
            for suffix, (nsg, _), ip, zone in zip(suffixes, nsgs, fixed_ips, zones, strict=True)
        ]
        gateway_ips = [
            nic.ip_configurations.apply(_first_private_ip)
            for _, nic in nics
        ]
        self.load_balancer_private_ip = pulumi.Output.from_input(None)
        next_hop = gateway_ips[0]
        if pool:
            # The routes point at the address the balancer really has (and so wait for it).
            next_hop = pool[1].frontend_ip_configurations.apply(_first_private_ip)
            self.load_balancer_private_ip = next_hop
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
                    next_hop_ip_address=next_hop,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=list(previous)),
                )
                previous[:] = [made]
                return made

            for_each(remote_cidrs, route)
        vms = [
            self._vm(
                f"{name}-gateway{suffix}",
                rg_name,
                location,
                args.get("vm_size") or "Standard_B2s",
                {"id": args["image_id"]},
                nic.id,
                None if args.get("image_specialized") else (self.admin_user, ssh_public_key),
                tags,
                # The pair adds its peer rules to this NSG once the VM exists: after the site's own.
                after=[last_rule],
                zone=zone,
            )
            for suffix, (_, nic), (_, last_rule), zone in zip(suffixes, nics, nsgs, zones, strict=True)
        ]

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

        self._gateways = [
            _Gateway(public_ip.ip_address.apply(_require_ip), ip, vm.id, nsg.name)
            for (public_ip, _), ip, vm, (nsg, _) in zip(nics, gateway_ips, vms, nsgs, strict=True)
        ]
        first = self._gateways[0]
        self.public_ip = first.public_ip
        self.gateway_private_ip = first.private_ip
        self.local_cidrs = pulumi.Output.from_input(local_cidrs).apply(list)
        self.remote_cidrs = pulumi.Output.from_input(remote_cidrs).apply(list)
        self.vm_id = first.vm_id
        self.resource_group_name = pulumi.Output.from_input(rg_name)
        self.gateway_nsg_name = first.nsg_name
        self.gateway_ready = first.vm_id
        self.gateway_public_ips = pulumi.Output.all(*(g.public_ip for g in self._gateways)).apply(list)
        self.gateway_private_ips = pulumi.Output.all(*(g.private_ip for g in self._gateways)).apply(list)
        self.vm_ids = pulumi.Output.all(*(g.vm_id for g in self._gateways)).apply(list)
        self.gateway_nsg_names = pulumi.Output.all(*(g.nsg_name for g in self._gateways)).apply(list)
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
                "gateway_public_ips": self.gateway_public_ips,
                "gateway_private_ips": self.gateway_private_ips,
                "vm_ids": self.vm_ids,
                "gateway_nsg_names": self.gateway_nsg_names,
                "load_balancer_private_ip": self.load_balancer_private_ip,
            }
        )

    def endpoint(self, site: str | None = None) -> GatewayEndpointArgs:
        """This gateway as :class:`Ikev2GatewayPair` takes it; ``site`` renames the side (two
        Azure sites in one pair need two names), default ``"azure"``. HA mode has two gateways:
        take them from :meth:`endpoints`."""
        if self._ha:
            raise ComponentInputError(
                f"{self._component} has two gateways ('ha' is set): join each to its own peer "
                f"gateway with site.endpoints() (sites 'azure-1' and 'azure-2'), not site.endpoint()"
            )
        return self._endpoint(self._gateways[0], site or self.site, None)

    def endpoints(self, site: str | None = None) -> list[GatewayEndpointArgs]:
        """Every gateway as :class:`Ikev2GatewayPair` takes it, first gateway first: one pair per
        gateway. HA mode: sites ``<site>-1`` and ``<site>-2`` (default ``azure-1``, ``azure-2``),
        each with its part in HA (``ha``: this side's ``bgp_as``, the second one ``standby``, the
        ``probe_port``); without ``ha``: ``[endpoint(site)]``."""
        ha = self._ha
        if not ha:
            return [self.endpoint(site)]
        prefix = site or self.site
        return [
            self._endpoint(
                gateway,
                f"{prefix}-{n}",
                GatewayHaArgs(
                    bgp_as=_whole(ha.get("bgp_as"), DEFAULT_AZURE_BGP_AS),
                    standby=n > 1,
                    probe_port=_whole(ha.get("probe_port"), DEFAULT_PROBE_PORT),
                ),
            )
            for n, gateway in enumerate(self._gateways, start=1)
        ]

    def _endpoint(self, gateway: _Gateway, site: str, ha: GatewayHaArgs | None) -> GatewayEndpointArgs:
        endpoint = GatewayEndpointArgs(
            site=site,
            admin_user=self.admin_user,
            public_ip=gateway.public_ip,
            gateway_private_ip=gateway.private_ip,
            local_cidrs=self.local_cidrs,
            remote_cidrs=self.remote_cidrs,
            gateway_ready=gateway.vm_id,
            machine_id=gateway.vm_id,
            azure_resource_group_name=self.resource_group_name,
            azure_network_security_group_name=gateway.nsg_name,
            azure_provider=cast(azure.Provider | None, self.get_provider("azure-native::")),
        )
        if ha is not None:
            endpoint["ha"] = ha
        return endpoint

    def _gateway_nsg(
        self,
        name: str,
        suffix: str,
        rg_name: pulumi.Input[str],
        location: str,
        tags: Mapping[str, str],
        admin_cidrs: pulumi.Input[Sequence[str]],
        forwarded: pulumi.Input[Sequence[str]],
        probe_port: int | None,
    ) -> tuple[azure.network.NetworkSecurityGroup, azure.network.SecurityRule]:
        """A gateway's NSG and the site's rules in it; the last rule written comes second."""
        nsg = azure.network.NetworkSecurityGroup(
            f"{name}-gateway-nsg{suffix}",
            resource_group_name=rg_name,
            location=location,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Azure takes one write at a time per NSG and per route table
        # (AnotherOperationInProgress): rules and routes are made one after another.
        rules: list[tuple[str, int, str, pulumi.Input[Sequence[str]] | str, str, str]] = [
            ("ssh", SSH_PRIORITY, "Tcp", admin_cidrs, "22", "SSH from the admin networks"),
            ("forward", FORWARD_PRIORITY, "*", forwarded, "*",
             "traffic the gateway forwards between the sites"),
        ]
        if probe_port is not None:
            # The default rule AllowAzureLoadBalancerInBound (65001) lets the probe in already and
            # this NSG denies nothing before it; said here, it survives a deny rule added later.
            rules.append((
                "probe", PROBE_PRIORITY, "Tcp", AZURE_LOAD_BALANCER_TAG, str(probe_port),
                "the internal load balancer's health probe (168.63.129.16)",
            ))
        last: azure.network.SecurityRule | None = None
        for kind, priority, protocol, sources, port, description in rules:
            last = _nsg_rule(
                f"{name}-{kind}{suffix}", rg_name, nsg.name, priority, protocol, sources, [port], description,
                pulumi.ResourceOptions(parent=self, depends_on=[last] if last else []),
            )
        assert last is not None
        return nsg, last

    def _load_balancer(
        self,
        name: str,
        ha: AzureHaArgs,
        rg_name: pulumi.Input[str],
        location: str,
        tags: Mapping[str, str],
        subnet_id: pulumi.Input[str],
        same_group_id: pulumi.Input[str],
    ) -> tuple[pulumi.Output[str], azure.network.LoadBalancer]:
        """The internal Standard balancer in front of the gateways: the id of its backend pool
        (for the gateways' NICs), and the balancer."""
        lb_name = f"{name}-ilb"
        # A rule names its balancer's own frontend, pool and probe by id, which Azure gives only
        # once the balancer exists: the ids are built the way ARM templates build them
        # (resourceId('Microsoft.Network/loadBalancers', name) + '/frontendIPConfigurations/...'),
        # from the balancer's fixed name and its resource group's id (taken from the NSG's, made
        # in the same group).
        lb_id = pulumi.Output.from_input(same_group_id).apply(
            lambda nsg_id: f"{_resource_group_id(nsg_id)}/providers/Microsoft.Network/loadBalancers/{lb_name}"
        )

        def part(kind: str, part_name: str) -> azure.network.SubResourceArgs:
            return azure.network.SubResourceArgs(id=pulumi.Output.concat(lb_id, f"/{kind}/{part_name}"))

        net = azure.network
        lb = net.LoadBalancer(
            lb_name,
            load_balancer_name=lb_name,
            resource_group_name=rg_name,
            location=location,
            sku=net.LoadBalancerSkuArgs(name="Standard", tier="Regional"),
            # No zones: a Standard internal frontend without them is zone-redundant in a region
            # with zones (learn.microsoft.com load-balancer-standard-availability-zones).
            frontend_ip_configurations=[net.FrontendIPConfigurationArgs(
                name="frontend",
                subnet=net.SubnetArgs(id=subnet_id),
                private_ip_address=ha["load_balancer_private_ip"],
                private_ip_allocation_method="Static",
                private_ip_address_version="IPv4",
            )],
            # The pool is a property of the balancer, its members are set on the NICs: Azure
            # refuses a write to a pool resource whose members are NIC ip configurations
            # (ModificationOfNICIpConfigBackendPoolNotSupported; Azure/bicep-registry-modules#3395).
            backend_address_pools=[net.BackendAddressPoolArgs(name="gateways")],
            probes=[net.ProbeArgs(
                name="tunnel-up",
                protocol="Http",
                port=_whole(ha.get("probe_port"), DEFAULT_PROBE_PORT),
                request_path=f"/{DEFAULT_PROBE_FILE}",
                interval_in_seconds=_whole(ha.get("probe_interval_seconds"), MIN_PROBE_INTERVAL),
                probe_threshold=_whole(ha.get("probe_threshold"), DEFAULT_PROBE_THRESHOLD),
            )],
            # HA ports: every protocol and port through one rule, without floating IP (packets
            # keep their destination), the NVA setup Azure documents
            # (learn.microsoft.com load-balancer-ha-ports-overview).
            load_balancing_rules=[net.LoadBalancingRuleArgs(
                name="ha-ports",
                protocol="All",
                frontend_port=0,
                backend_port=0,
                enable_floating_ip=False,
                frontend_ip_configuration=part("frontendIPConfigurations", "frontend"),
                backend_address_pool=part("backendAddressPools", "gateways"),
                probe=part("probes", "tunnel-up"),
            )],
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return pulumi.Output.concat(lb_id, "/backendAddressPools/gateways"), lb

    def _gateway_nic(
        self,
        name: str,
        suffix: str,
        rg_name: pulumi.Input[str],
        location: str,
        tags: Mapping[str, str],
        subnet_id: pulumi.Input[str],
        nsg_id: pulumi.Input[str],
        private_ip: str | None,
        zone: str | None,
        pool: tuple[pulumi.Input[str], azure.network.LoadBalancer] | None,
    ) -> tuple[azure.network.PublicIPAddress, azure.network.NetworkInterface]:
        """A gateway's static Standard public IP (in ``zone``, if any) and its NIC (in the
        balancer's ``pool``, if any)."""
        zonal: dict[str, Any] = {"zones": [zone]} if zone else {}
        # Azure refuses to change the zones of a public IP or VM ("Changing property 'zones'
        # is not allowed", hashicorp/terraform-provider-azurerm#3277; MicrosoftDocs/azure-docs
        # #77045): replace it. Also without a zone, so that turning HA off (zones removed)
        # replaces too instead of an update Azure refuses.
        ip_opts = pulumi.ResourceOptions(parent=self, replace_on_changes=["zones"])
        public_ip = azure.network.PublicIPAddress(
            f"{name}-ip{suffix}",
            resource_group_name=rg_name,
            location=location,
            sku={"name": "Standard", "tier": "Regional"},
            public_ip_allocation_method="Static",
            public_ip_address_version="IPv4",
            tags=tags,
            opts=ip_opts,
            **zonal,
        )
        ip_config: Any = {
            "name": "primary",
            "primary": True,
            "subnet": {"id": subnet_id},
            "public_ip_address": {"id": public_ip.id},
            "private_ip_allocation_method": "Static" if private_ip else "Dynamic",
        }
        if private_ip:
            ip_config["private_ip_address"] = private_ip
        nic_opts = pulumi.ResourceOptions(parent=self)
        if pool:
            pool_id, lb = pool
            ip_config["load_balancer_backend_address_pools"] = [{"id": pool_id}]
            # The pool is named by an id built before the balancer exists: wait for it.
            nic_opts = pulumi.ResourceOptions(parent=self, depends_on=[lb])
        nic = azure.network.NetworkInterface(
            f"{name}-nic{suffix}",
            resource_group_name=rg_name,
            location=location,
            # The gateway forwards packets that are neither from nor to itself.
            enable_ip_forwarding=True,
            ip_configurations=[ip_config],
            network_security_group={"id": nsg_id},
            tags=tags,
            opts=nic_opts,
        )
        return public_ip, nic

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
        zone: str | None = None,
    ) -> azure.compute.VirtualMachine:
        """A VM on ``nic_id`` (in availability ``zone``, if any); ``admin`` (user, SSH key) makes
        its OS profile, None leaves it out (a specialized image brings its own users and refuses
        one)."""
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
        zonal: dict[str, Any] = {"zones": [zone]} if zone else {}
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
            **zonal,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(after),
                # Azure refuses a new image on an existing VM (PropertyChangeNotAllowed,
                # pulumi-azure-native issue 1117): replace it. The NIC can serve one VM at a
                # time, so the old VM goes first.
                # The same for a new admin user or SSH key: Azure refuses to change the OS
                # profile of an existing VM (PropertyChangeNotAllowed, Azure/azure-cli#11840).
                # Nor does it move a VM to another zone (see _gateway_nic).
                replace_on_changes=[
                    "storageProfile.imageReference", "osProfile", "zones"
                ],
                delete_before_replace=True,
            ),
        )


def _nsg_rule(
    name: str,
    rg_name: pulumi.Input[str],
    nsg_name: pulumi.Input[str],
    priority: int,
    protocol: str,
    sources: pulumi.Input[Sequence[str]] | str,
    ports: list[str],
    description: str,
    opts: pulumi.ResourceOptions,
) -> azure.network.SecurityRule:
    """An inbound allow rule from ``sources``: networks, or one service tag (a string)."""
    port_args: dict[str, Any] = (
        {"destination_port_range": ports[0]} if len(ports) == 1 else {"destination_port_ranges": ports}
    )
    # Azure takes a service tag in sourceAddressPrefix only, never in the list ("cannot specify
    # existing VIRTUALNETWORK, INTERNET, AZURELOADBALANCER, '*' or system tags",
    # hashicorp/terraform-provider-azurerm#5617).
    source_args: dict[str, Any] = (
        {"source_address_prefix": sources}
        if isinstance(sources, str)
        else {"source_address_prefixes": sources}
    )
    return azure.network.SecurityRule(
        name,
        resource_group_name=rg_name,
        network_security_group_name=nsg_name,
        priority=priority,
        direction="Inbound",
        access="Allow",
        protocol=protocol,
        source_port_range="*",
        destination_address_prefix="*",
        description=description,
        opts=opts,
        **source_args,
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


def _first_private_ip(configurations: Sequence[Any] | None) -> str:
    """The private address of the first ip configuration of a NIC or a balancer's frontend."""
    return _require_ip(configurations[0].private_ip_address if configurations else None)


def _require_ip(ip: str | None) -> str:
    if not ip:
        raise ValueError("Azure returned no address for the gateway")
    return ip
