"""Pulumi ComponentResources of cross-cloud-vpn: one per cloud site, the gateway pair, and the set
of pairs of HA mode.

These are also served to other languages by the component package in ``provider/``. The image
components (``cross_cloud_vpn.components.images``) read local files and run a local upload, so
they are for Python programs only and are not exported here.
"""

from .aws_site import AwsHaArgs, AwsHaSteering, AwsSite, AwsSiteArgs, AwsTestVmArgs
from .azure_site import AzureHaArgs, AzureSite, AzureSiteArgs, AzureTestVmArgs
from .gateway_pair import Ikev2GatewayPair, Ikev2GatewayPairArgs
from .site import GatewayEndpointArgs, GatewayHaArgs, IkeAuthMode, IkeRole, RouteTableSteeringArgs
from .tunnel_set import Ikev2TunnelSet, Ikev2TunnelSetArgs

__all__ = [
    "AwsHaArgs",
    "AwsHaSteering",
    "AwsSite",
    "AwsSiteArgs",
    "AwsTestVmArgs",
    "AzureHaArgs",
    "AzureSite",
    "AzureSiteArgs",
    "AzureTestVmArgs",
    "GatewayEndpointArgs",
    "GatewayHaArgs",
    "IkeAuthMode",
    "IkeRole",
    "Ikev2GatewayPair",
    "Ikev2GatewayPairArgs",
    "Ikev2TunnelSet",
    "Ikev2TunnelSetArgs",
    "RouteTableSteeringArgs",
]
