"""The config reference: one entry per key the program reads, rendered into the README.

``python -m cross_cloud_vpn.config_reference`` rewrites the README's table; a test fails when
the table, this list and the keys ``stack_config`` reads drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cross_cloud_vpn.stack_config import PROJECT

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"

#: key -> (meaning, default). Objects (``aws``, ``aws.testVm``) are documented by their keys.
REFERENCE: dict[str, tuple[str, str]] = {
    "prefix": ("starts every resource name; 1 to 20 of `a-z0-9-`, starting with a letter", "`ccvpn-<stack>`"),
    "tags": ("extra tags on every resource (project and stack are always added)", "`{}`"),
    "aws": ("the AWS side (object: the `aws.*` keys)", "required"),
    "azure": ("the Azure side (object: the `azure.*` keys)", "required"),
    "sshPublicKey": (
        "OpenSSH public key for both gateways' admin user: `ssh-ed25519`, or `ssh-rsa` of 2048 bits "
        "or more (what both clouds take)",
        "required",
    ),
    "sshPrivateKey": ("its private key, for the SSH bootstrap — **secret**", "required"),
    "adminCidrs": ("networks allowed to SSH to the gateways", "required"),
    "allowSshFromAnywhere": ("opt-in needed for `0.0.0.0/0` in `adminCidrs`", "`false`"),
    "tunnel": ("how the tunnel is set up (object: the `tunnel.*` keys)", "defaults below"),
    "psk": ('pre-shared key, ≥ 20 printable characters, no `"` or `\\` — **secret**; only with `psk`', "—"),
    "imageFile": (
        "one OpenBSD disk image (raw or qcow2) imported into both clouds as the gateways' "
        "image; instead of `aws.amiId`/lookup and `azure.imageId` (needs `qemu-img`)",
        "—",
    ),
    "aws.region": ("AWS region", "required"),
    "aws.vpcCidr": ("create: the VPC", "required to create"),
    "aws.gatewaySubnetCidr": (
        "create: the gateway's public subnet, /28 or larger (gateway = host .10)",
        "required to create",
    ),
    "aws.workloadSubnetCidrs": (
        "create: one or more workload subnets routed through the tunnel",
        "required to create",
    ),
    "aws.vpcId": ("bring your own: an existing VPC; its CIDR blocks are looked up (`aws.ec2.get_vpc`)", "—"),
    "aws.gatewaySubnetId": ("bring your own: a public subnet for the gateway", "required with `vpcId`"),
    "aws.workloadRouteTableIds": (
        "bring your own: route tables that get a route per remote CIDR",
        "required with `vpcId`",
    ),
    "aws.gatewayPrivateIp": ("fixed private IP of the gateway", "host .10 (create) / AWS picks (BYO)"),
    "aws.availabilityZone": ("zone of the created subnets", "AWS picks"),
    "aws.instanceType": (
        "gateway instance type: a Xen-based family (t2, m4, c4, r4, i3, d2, x1, x1e, h1, p2, p3, g3, "
        "f1): OpenBSD has no driver for the ENA card of Nitro types (t3, m5, c5, ...)",
        "`t2.small`",
    ),
    "aws.secondGatewaySubnetCidr": (
        "HA: the second gateway's public subnet, /28 or larger, in the second zone (gateway = host .10)",
        "required with `ha.enabled`",
    ),
    "aws.secondAvailabilityZone": ("HA: the second gateway's zone", "AWS's second zone"),
    "aws.imageHasEna": ("your image has its own ENA driver: allows a Nitro `instanceType`", "`false`"),
    "aws.amiId": ("your OpenBSD AMI (or the lookup below, or `imageFile`)", "—"),
    "aws.amiOwner": ("AMI lookup: owner (with `amiNameFilter`; newest match wins)", "—"),
    "aws.amiNameFilter": ("AMI lookup: name pattern", "—"),
    "aws.adminUser": ("user with doas on the image", "`ec2-user`"),
    "aws.testVm": (
        "a Linux VM in the first workload subnet (host .20), or `false`; create mode only",
        "none",
    ),
    "aws.testVm.instanceType": ("its instance type", "`t3.micro`"),
    "aws.testVm.amiOwner": ("its AMI owner", "`136693071363` (Debian)"),
    "aws.testVm.amiNameFilter": ("its AMI name pattern", "`debian-12-amd64-*`"),
    "azure.location": ("Azure region", "required"),
    "azure.resourceGroupName": (
        "create: the resource group to create; BYO: an existing one for the gateway",
        "required",
    ),
    "azure.vnetCidr": ("create: the VNet", "required to create"),
    "azure.gatewaySubnetCidr": (
        "create: the gateway's subnet, /28 or larger (gateway = host .10)",
        "required to create",
    ),
    "azure.workloadSubnetCidrs": (
        "create: one or more workload subnets routed through the tunnel",
        "required to create",
    ),
    "azure.vnetId": ("bring your own: an existing VNet id; its address space is looked up", "—"),
    "azure.gatewaySubnetId": ("bring your own: the gateway's subnet id", "required with `vnetId`"),
    "azure.workloadRouteTableId": (
        "bring your own: the route table the workload subnets use",
        "required with `vnetId`",
    ),
    "azure.gatewayPrivateIp": ("fixed private IP of the gateway", "host .10 (create) / Azure picks (BYO)"),
    "azure.vmSize": ("gateway VM size", "`Standard_B2s`"),
    "azure.imageId": (
        "your OpenBSD managed image or gallery image version id",
        "required unless `imageFile`",
    ),
    "azure.imageSpecialized": (
        "the image is a specialized gallery image version: no OS profile is sent (the admin user "
        "and its SSH key must be in the image)",
        "`false` (generalized: its agent must report ready)",
    ),
    "azure.adminUser": ("user with doas on the image", "`azure-user`"),
    "azure.testVm": (
        "a Linux VM in the first workload subnet (host .20), or `false`; create mode only",
        "none",
    ),
    "azure.testVm.vmSize": ("its VM size", "`Standard_B1s`"),
    "azure.testVm.imagePublisher": ("its Marketplace image publisher", "`Debian`"),
    "azure.testVm.imageOffer": ("its image offer", "`debian-12`"),
    "azure.testVm.imageSku": ("its image SKU", "`12-gen2`"),
    "azure.testVm.imageVersion": ("its image version", "`latest`"),
    "tunnel.authMode": (
        "`pubkey` (each gateway's own iked key; only public keys cross) or `psk`",
        "`pubkey`",
    ),
    "tunnel.ikeProposal": (
        "IKE SA proposal (iked.conf(5))",
        "`enc aes-256-gcm prf hmac-sha2-256 group curve25519`",
    ),
    "tunnel.childProposals": (
        "child SA proposals, in order of preference",
        "`enc aes-256-gcm group curve25519`, `enc aes-256 auth hmac-sha2-512 group curve25519`",
    ),
    "tunnel.dpdInterval": ("seconds between liveness checks (0: off)", "`30`"),
    "tunnel.awsRole": ("`active` or `passive` (not both passive)", "`active`"),
    "tunnel.azureRole": ("`active` or `passive`", "`active`"),
    "tunnel.requireUp": (
        "fail `pulumi up` when the tunnel is not up within 3 minutes of configuring, printing what "
        "each gateway sees; `false` only reports it in `tunnel_status`",
        "`true`",
    ),
    "ha": ("high availability (object: the `ha.*` keys); see \"High availability\"", "off"),
    "ha.enabled": (
        "two gateways per side in two zones, one tunnel each, steered by BGP over the tunnels; "
        "needs `aws.secondGatewaySubnetCidr` and created networks",
        "`false`",
    ),
    "ha.awsSteering": (
        "`route-tables`: the AWS gateways rewrite the workload routes themselves (EC2 API, instance "
        "role; no extra cost); `route-server`: AWS VPC Route Server (billed per endpoint-hour)",
        "`route-tables`",
    ),
    "ha.awsAsn": ("private AS number of the AWS gateways", "`65010`"),
    "ha.azureAsn": ("private AS number of the Azure gateways", "`65020`"),
    "ha.routeServerAsn": ("AS number of the AWS route server (`route-server` only)", "`65000`"),
    "ha.probePort": (
        "TCP port of each gateway's health responder (Azure load balancer probe; AWS partner probe)",
        "`8080`",
    ),
    "ha.azureZones": (
        "the Azure gateways' two availability zones (second gateway = host .11, load balancer "
        "frontend = host .12 of `azure.gatewaySubnetCidr`)",
        "`[\"1\", \"2\"]`",
    ),
}


def render_table() -> str:
    rows = ["| key | meaning | default |", "|---|---|---|"]
    rows += [f"| `{key}` | {meaning} | {default} |" for key, (meaning, default) in REFERENCE.items()]
    return "\n".join(rows)


def render_block() -> str:
    return f"{START}\nAll keys live in the `{PROJECT}:` namespace.\n\n{render_table()}\n{END}"


def replace_block(text: str) -> str:
    """``text`` with its config-reference block regenerated."""
    start, end = text.index(START), text.index(END) + len(END)
    return text[:start] + render_block() + text[end:]


def main() -> int:
    readme = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    readme.write_text(replace_block(readme.read_text()))
    print(f"{readme}: config reference regenerated ({len(REFERENCE)} keys)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
