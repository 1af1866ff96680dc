"""cross-cloud-vpn: an AWS VPC and an Azure VNet joined by an IKEv2 tunnel between OpenBSD gateways.

Reads and checks the stack config (every problem reported before any resource exists),
builds the two sites side by side, joins them with the gateway pair, and exports what a
user needs to reach and check the tunnel.
"""

import pulumi

from cross_cloud_vpn.program import build

outputs = build()
for key, value in outputs.items():
    pulumi.export(key, value)
