"""An AMI lookup that does not replace a running machine when a newer image is published.

``aws.ec2.get_ami(most_recent=True)`` answers a newer AMI as soon as its owner publishes one
(Debian publishes often; so does whoever builds OpenBSD images), and a new ``ami`` replaces the
instance: every `pulumi up` after a publication would replace the machine with no change by
the user. :class:`PinnedAmi` keeps the first answer in the state of a local command whose
``environment`` changes are ignored, so the id stays until the *choice* changes: the command
is named after the owner and name filter, so a new choice makes a new command, which looks up
afresh, and the machine is then replaced on purpose.

``ignore_changes=["ami"]`` on the instance would not do: the engine keeps an ignored value
from the state for every later update *and replacement* (Pulumi's ignoreChanges docs), so a
deliberate new image would never reach the machine. It runs ``printf`` in ``/bin/sh`` on the
machine running Pulumi (Linux, macOS, WSL).
"""

import hashlib
from typing import TypedDict

import pulumi
import pulumi_aws as aws
from pulumi_command import local


class PinnedAmiArgs(TypedDict):
    """Which AMI: the newest of ``owner`` whose name matches ``name_filter``, at first lookup."""

    owner: str
    """An account id, or ``self``/``amazon``/``aws-marketplace``."""
    name_filter: str
    """An AMI name pattern (``*`` wildcards), e.g. ``debian-12-amd64-*``."""


class PinnedAmi(pulumi.ComponentResource):
    """The newest matching AMI, kept until the owner or name filter changes."""

    ami_id: pulumi.Output[str]
    """The AMI id the first lookup with this owner and filter answered."""

    def __init__(self, name: str, args: PinnedAmiArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cross-cloud-vpn:index:PinnedAmi", name, None, opts)
        owner, name_filter = args["owner"], args["name_filter"]
        found = aws.ec2.get_ami_output(
            owners=[owner],
            most_recent=True,
            filters=[{"name": "name", "values": [name_filter]}],
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        choice = hashlib.sha256(f"{owner}\n{name_filter}".encode()).hexdigest()[:10]
        pin = local.Command(
            f"{name}-{choice}",
            create='printf %s "$IMAGE_ID"',
            environment={"IMAGE_ID": found.id},
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["environment"]),
        )
        self.ami_id = pin.stdout
        self.register_outputs({"ami_id": self.ami_id})
