"""cross-cloud-vpn: an AWS VPC and an Azure VNet joined by an IKEv2 tunnel between OpenBSD gateways.

The import path is ``cross_cloud_vpn``; its subpackages live at the top of the repository
(``components/``, ``openbsd/``, ``lab/``) and are mapped into it by ``pyproject.toml``
(setuptools ``package-dir``), so the Pulumi program, the tests and an outside project all write
``from cross_cloud_vpn.openbsd import ...``.
"""
