"""Pulumi ComponentResources of cross-cloud-vpn: one per cloud site, and the gateway pair."""

from .aws_site import AwsSite, AwsSiteArgs, AwsTestVmArgs
from .azure_site import AzureSite, AzureSiteArgs, AzureTestVmArgs
from .gateway_pair import Ikev2GatewayPair, Ikev2GatewayPairArgs
from .site import GatewaySite

__all__ = [
    "AwsSite",
    "AwsSiteArgs",
    "AwsTestVmArgs",
    "AzureSite",
    "AzureSiteArgs",
    "AzureTestVmArgs",
    "GatewaySite",
    "Ikev2GatewayPair",
    "Ikev2GatewayPairArgs",
]
