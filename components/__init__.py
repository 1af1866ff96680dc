"""Pulumi ComponentResources of cross-cloud-vpn: one per cloud site and the gateway pair.

These are also served to other languages by the component package in ``provider/``. The image
components (``cross_cloud_vpn.components.images``) read local files and run a local upload, so
they are for Python programs only and are not exported here.
"""

from .aws_site import AwsSite, AwsSiteArgs, AwsTestVmArgs
from .azure_site import AzureSite, AzureSiteArgs, AzureTestVmArgs
from .gateway_pair import Ikev2GatewayPair, Ikev2GatewayPairArgs
from .site import GatewayEndpointArgs, IkeAuthMode, IkeRole

__all__ = [
    "AwsSite",
    "AwsSiteArgs",
    "AwsTestVmArgs",
    "AzureSite",
    "AzureSiteArgs",
    "AzureTestVmArgs",
    "GatewayEndpointArgs",
    "IkeAuthMode",
    "IkeRole",
    "Ikev2GatewayPair",
    "Ikev2GatewayPairArgs",
]
