"""Which cloud machines OpenBSD runs on: facts the stack config and the components both check.

OpenBSD has no driver for the Elastic Network Adapter (ENA) that every Nitro instance type
uses (t3, t3a, m5, c5, m6i, ... every current generation; "All Nitro-based instances use ENA",
docs.aws.amazon.com/AWSEC2/latest/UserGuide/enhanced-networking.html; OpenBSD's manual has no
ena(4), and third parties writing one out of tree said so in 2026), so there an OpenBSD gateway
boots without network and the SSH wait runs into its timeout. On the Xen-based families below
OpenBSD's xnf(4) attaches and "will ask the hypervisor to switch all configured virtual
interfaces over to the Netfront interface regardless of the VM configuration"
(man.openbsd.org/xnf.4), even where the type also offers ENA (H1, I3, G3, P2, P3, R4).
"""

from __future__ import annotations

#: Xen-based EC2 instance families (xnf(4) network). Note i3en and p3dn are Nitro.
XEN_INSTANCE_FAMILIES: tuple[str, ...] = (
    "t2", "m4", "c4", "r4", "i3", "d2", "x1", "x1e", "h1", "p2", "p3", "g3", "f1",
)
DEFAULT_AWS_INSTANCE_TYPE = "t2.small"


def instance_type_problem(instance_type: str) -> str | None:
    """Why an OpenBSD image without its own ENA driver has no network on this type, or None."""
    family = instance_type.split(".", 1)[0]
    if family in XEN_INSTANCE_FAMILIES:
        return None
    return (
        f"{family!r} is not a Xen-based family (a Nitro one, or unknown): OpenBSD has no driver for "
        f"the ENA network card of Nitro instances, so the gateway would boot without network; use "
        f"one of {', '.join(XEN_INSTANCE_FAMILIES)} (e.g. {DEFAULT_AWS_INSTANCE_TYPE})"
    )
