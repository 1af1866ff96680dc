"""Import one OpenBSD disk image into AWS (an AMI) and Azure (a managed image).

The files come from :mod:`cross_cloud_vpn.disk_image` (a raw file for AWS, a fixed MiB-aligned
VHD for Azure); ``sha256`` is the *source* image's digest. Everything that holds image bytes is
**content-addressed**: the first 12 hex digits of the sha256 are in the logical names (and the
full digest in the S3 key), so the same file never uploads twice and a new file makes a new
object, snapshot, AMI, container, blob and image, created before the old ones are deleted.
Pulumi still reads each file once per ``preview``/``up`` to hash the asset.

AWS
---
A private S3 bucket (all four public access blocks on, ``BucketOwnerEnforced`` ownership so
ACLs are off, SSE-S3 encryption: the import service reads it without KMS grants), the object,
an ``ebs.SnapshotImport`` of it, and an ``ec2.Ami`` (hvm, x86_64, legacy BIOS, ENA) whose root
device is that snapshot.

The import runs as a service role of our own (passed as ``role_name``, so an account's
existing ``vmimport`` role is neither needed nor touched). Its trust policy lets only
``vmie.amazonaws.com`` assume it, with ``sts:ExternalId = vmimport`` as AWS requires. Its one
inline policy (least privilege, from the VM Import/Export service-role documentation, less the
export-bucket and KMS parts):

* ``s3:GetBucketLocation``, ``s3:ListBucket`` on this bucket, ``s3:GetObject`` on its objects:
  nothing else in the account is readable;
* ``ec2:ModifySnapshotAttribute``, ``ec2:CopySnapshot``, ``ec2:RegisterImage``,
  ``ec2:Describe*`` on ``*`` (EC2 has no resource-level scoping for the import's work).

Azure
-----
A storage account (StorageV2, Standard_LRS, no public blob access, TLS 1.2 minimum, HTTPS only)
and, per image, a **private** container holding the VHD as a **page blob**, and a
``compute.Image`` (Linux, Generalized, Hyper-V generation V1) from the blob's URL.

The ``azure-native`` provider's ``storage.Blob`` creates only block and append blobs (the
``BlobType`` enum has no ``Page``, and the provider answers ``unsupported blob type`` for
anything else; it also reads a source whole into memory for one Put Blob), while Azure builds
images only from page blobs. So the upload is a local ``command`` that runs
``python -m cross_cloud_vpn.disk_image upload-page-blob`` with a service SAS limited to that one
blob (create + write, HTTPS only, valid one day), handed in through a secret environment
variable; it checks the VHD footer before it sends a byte and skips all-zero pages. The SAS
changes on every run, so the command ignores changes to its environment and command line; a new
image changes its name, which runs it again, and so does a container or storage account made
anew (they are in its triggers). Deleting an old image's container (when a new
file replaces it, or at ``destroy``) deletes its blob.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_azure_native as azure
import pulumi_command as command

AWS_DISK_FORMATS = ("RAW", "VMDK", "VHD")


def short_hash(sha256: str) -> str:
    """The 12 hex digits of a sha256 that resource names carry (checked: 64 lowercase hex)."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"sha256 must be 64 lowercase hex digits, not {sha256!r}")
    return sha256[:12]


@dataclass(frozen=True)
class AwsImageArgs:
    """What :class:`AwsImage` imports: ``source_path`` from ``disk_image.prepare_for_aws``."""

    source_path: str
    sha256: str
    """The source image file's sha256 (``ImageInfo.sha256``)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    disk_format: str = "RAW"
    ena_support: bool = True
    root_device_name: str = "/dev/sda1"
    boot_mode: str = "legacy-bios"
    volume_type: str = "gp3"
    encrypted: bool = True
    """Encrypt the imported snapshot with the account's default EBS key (set at the import only:
    the snapshot ignores later changes to it, see :class:`AwsImage`)."""


class AwsImage(pulumi.ComponentResource):
    """Private S3 bucket, the image object, a vmimport service role, the snapshot and the AMI."""

    ami_id: pulumi.Output[str]
    snapshot_id: pulumi.Output[str]
    bucket_name: pulumi.Output[str]
    object_key: pulumi.Output[str]
    short_hash: str

    def __init__(self, name: str, args: AwsImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cross-cloud-vpn:index:AwsImage", name, None, opts)
        if args.disk_format not in AWS_DISK_FORMATS:
            raise ValueError(f"disk_format must be one of {AWS_DISK_FORMATS}, not {args.disk_format!r}")
        h = self.short_hash = short_hash(args.sha256)
        child = pulumi.ResourceOptions(parent=self)
        tags = {**args.tags, "ImageSha256": args.sha256}

        bucket = aws.s3.Bucket(f"{name}-bucket", tags={**tags, "Name": f"{name}-bucket"}, opts=child)
        access = aws.s3.BucketPublicAccessBlock(
            f"{name}-bucket",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-bucket",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-bucket",
            bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=child,
        )
        extension = {"RAW": "raw", "VMDK": "vmdk", "VHD": "vhd"}[args.disk_format]
        obj = aws.s3.BucketObjectv2(
            f"{name}-{h}",
            bucket=bucket.id,
            key=f"images/{args.sha256}.{extension}",
            source=pulumi.FileAsset(args.source_path),
            server_side_encryption="AES256",
            content_type="application/octet-stream",
            # S3 takes at most 10 tags per object, the AWS provider's default tags included
            # (https://docs.aws.amazon.com/AmazonS3/latest/userguide/tagging-managing.html): the
            # object carries only its own; the caller's tags are on the bucket.
            tags={"ImageSha256": args.sha256},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[access, ownership, encryption]),
        )

        role = aws.iam.Role(
            f"{name}-vmimport",
            description="VM Import/Export service role for cross-cloud-vpn's OpenBSD image",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "vmie.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                            "Condition": {"StringEquals": {"sts:ExternalId": "vmimport"}},
                        }
                    ],
                }
            ),
            tags=tags,
            opts=child,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-vmimport",
            role=role.id,
            policy=bucket.arn.apply(lambda arn: json.dumps(vmimport_policy(arn))),
            opts=child,
        )
        snapshot = aws.ebs.SnapshotImport(
            f"{name}-{h}",
            disk_container={
                "format": args.disk_format,
                "description": f"OpenBSD image sha256 {args.sha256}",
                "user_bucket": {"s3_bucket": bucket.id, "s3_key": obj.key},
            },
            role_name=role.name,
            encrypted=args.encrypted,
            description=f"{name}: OpenBSD image sha256 {args.sha256}",
            tags={**tags, "Name": f"{name}-{h}"},
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[policy],
                # The provider reads both back from the snapshot, and both force a new import
                # without being "computed": an encrypted snapshot comes back with the account's
                # EBS key in kms_key_id (or encrypted=true from encryption by default), a diff that
                # replaced the snapshot, and so the AMI, on every up. resourceEBSSnapshotImportRead in
                # https://github.com/hashicorp/terraform-provider-aws/blob/main/internal/service/ec2/ebs_snapshot_import.go
                # sets "encrypted" and "kms_key_id"; the known workaround is this ignore_changes
                # (https://github.com/hashicorp/terraform-provider-aws/issues/7407, and the same
                # perpetual replacement in https://github.com/pulumi/pulumi-aws/issues/999). A new
                # image still makes a new snapshot: its hash is in the name and the S3 key.
                ignore_changes=["encrypted", "kmsKeyId"],
            ),
        )
        ami = aws.ec2.Ami(
            f"{name}-{h}",
            name=f"{name}-{h}",
            description=f"OpenBSD, image sha256 {args.sha256}",
            virtualization_type="hvm",
            architecture="x86_64",
            boot_mode=args.boot_mode,
            ena_support=args.ena_support,
            root_device_name=args.root_device_name,
            ebs_block_devices=[
                {
                    "device_name": args.root_device_name,
                    "snapshot_id": snapshot.id,
                    "volume_type": args.volume_type,
                    "delete_on_termination": True,
                }
            ],
            tags={**tags, "Name": f"{name}-{h}"},
            # The name is fixed and EC2 refuses a second AMI of the same name in a region
            # (InvalidAMIName.Duplicate, RegisterImage): a replacement deregisters the old one first.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )

        self.ami_id = ami.id
        self.snapshot_id = snapshot.id
        self.bucket_name = bucket.id
        self.object_key = obj.key
        self.register_outputs(
            {
                "ami_id": self.ami_id,
                "snapshot_id": self.snapshot_id,
                "bucket_name": self.bucket_name,
                "object_key": self.object_key,
            }
        )


def vmimport_policy(bucket_arn: str) -> dict[str, Any]:
    """The import role's inline policy: read this bucket only, and the EC2 import actions."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket"], "Resource": bucket_arn},
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"{bucket_arn}/*"},
            {
                "Effect": "Allow",
                "Action": [
                    "ec2:ModifySnapshotAttribute",
                    "ec2:CopySnapshot",
                    "ec2:RegisterImage",
                    "ec2:Describe*",
                ],
                "Resource": "*",
            },
        ],
    }


@dataclass(frozen=True)
class AzureImageArgs:
    """What :class:`AzureImage` imports: ``source_path`` from ``disk_image.prepare_for_azure``."""

    source_path: str
    sha256: str
    """The source image file's sha256 (``ImageInfo.sha256``)."""
    resource_group_name: pulumi.Input[str]
    location: str
    create_resource_group: bool = False
    """Create ``resource_group_name`` as part of the image (for programs that have none yet)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    storage_account_name: str | None = None
    """3-24 of a-z0-9, unique in all of Azure; default: derived from the component name and
    the subscription id."""
    hyper_v_generation: str = "V1"
    python: str = sys.executable
    """The interpreter that runs the upload (it must import ``cross_cloud_vpn``)."""
    sas_valid_for: timedelta = timedelta(days=1)


def storage_account_name(seed: str, subscription_id: str | None) -> str:
    """``ccvpn`` and 19 hex digits of a hash: stable for a stack, unlikely to be taken."""
    return "ccvpn" + hashlib.sha256(f"{subscription_id or ''}/{seed}".encode()).hexdigest()[:19]


class AzureImage(pulumi.ComponentResource):
    """Storage account, a private container with the VHD as a page blob, and a managed image."""

    image_id: pulumi.Output[str]
    blob_url: pulumi.Output[str]
    storage_account_name: pulumi.Output[str]
    short_hash: str

    def __init__(self, name: str, args: AzureImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cross-cloud-vpn:index:AzureImage", name, None, opts)
        h = self.short_hash = short_hash(args.sha256)
        child = pulumi.ResourceOptions(parent=self)
        tags = {**args.tags, "imageSha256": args.sha256}
        rg_name: pulumi.Input[str] = args.resource_group_name
        if args.create_resource_group:
            rg_name = azure.resources.ResourceGroup(
                f"{name}-rg",
                resource_group_name=args.resource_group_name,
                location=args.location,
                tags=tags,
                opts=child,
            ).name

        if args.storage_account_name is not None:
            account_name: pulumi.Input[str] = args.storage_account_name
        else:
            client = azure.authorization.get_client_config_output(
                opts=pulumi.InvokeOutputOptions(parent=self)
            )
            account_name = client.subscription_id.apply(lambda sub: storage_account_name(name, sub))
        account = azure.storage.StorageAccount(
            f"{name}-sa",
            account_name=account_name,
            resource_group_name=rg_name,
            location=args.location,
            kind="StorageV2",
            sku={"name": "Standard_LRS"},
            allow_blob_public_access=False,
            minimum_tls_version="TLS1_2",
            enable_https_traffic_only=True,
            # The upload authenticates with a service SAS, which is signed with the account key.
            allow_shared_key_access=True,
            tags=tags,
            opts=child,
        )
        container = azure.storage.BlobContainer(
            f"{name}-{h}",
            account_name=account.name,
            resource_group_name=rg_name,
            container_name=f"openbsd-{h}",
            public_access=azure.storage.PublicAccess.NONE,
            opts=child,
        )
        blob_name = f"openbsd-{args.sha256}.vhd"
        blob_url = pulumi.Output.all(account.primary_endpoints, container.name).apply(
            lambda v: f"{_blob_endpoint(v[0])}{v[1]}/{blob_name}"
        )
        expiry = (datetime.now(UTC) + args.sas_valid_for).strftime("%Y-%m-%dT%H:%M:%SZ")
        sas = azure.storage.list_storage_account_service_sas_output(
            account_name=account.name,
            resource_group_name=rg_name,
            canonicalized_resource=pulumi.Output.all(account.name, container.name).apply(
                lambda v: f"/blob/{v[0]}/{v[1]}/{blob_name}"
            ),
            resource="b",
            permissions="cw",
            protocols=azure.storage.HttpProtocol.HTTPS,
            shared_access_expiry_time=expiry,
            opts=pulumi.InvokeOutputOptions(parent=self),
        ).service_sas_token
        upload = command.local.Command(
            f"{name}-upload-{h}",
            create=(
                f"{shlex.quote(args.python)} -m cross_cloud_vpn.disk_image upload-page-blob "
                f'{shlex.quote(args.source_path)} "$CCVPN_BLOB_URL"'
            ),
            environment={"CCVPN_BLOB_URL": blob_url, "CCVPN_BLOB_SAS": pulumi.Output.secret(sas)},
            # Upload again into a container (or account) made anew, which is empty. Azure gives a
            # re-created resource the same id, so its etag and the account's creation time, which
            # are new each time, are in the triggers too.
            triggers=[args.sha256, account.id, account.creation_time, container.id, container.etag],
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["create", "environment"]),
        )
        image = azure.compute.Image(
            f"{name}-{h}",
            image_name=f"{name}-{h}",
            resource_group_name=rg_name,
            location=args.location,
            hyper_v_generation=args.hyper_v_generation,
            storage_profile=azure.compute.ImageStorageProfileArgs(
                os_disk=azure.compute.ImageOSDiskArgs(
                    os_type=azure.compute.OperatingSystemTypes.LINUX,
                    os_state=azure.compute.OperatingSystemStateTypes.GENERALIZED,
                    blob_uri=blob_url,
                    caching=azure.compute.CachingTypes.READ_WRITE,
                )
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[upload]),
        )

        self.image_id = image.id
        self.blob_url = blob_url
        self.storage_account_name = account.name
        self.register_outputs(
            {
                "image_id": self.image_id,
                "blob_url": self.blob_url,
                "storage_account_name": self.storage_account_name,
            }
        )


def _blob_endpoint(endpoints: Any) -> str:
    """``https://<account>.blob.<suffix>/`` from the account's primary endpoints (any cloud)."""
    blob = endpoints.get("blob") if isinstance(endpoints, Mapping) else getattr(endpoints, "blob", None)
    if not blob:
        raise ValueError(f"storage account has no blob endpoint: {endpoints!r}")
    return str(blob) if str(blob).endswith("/") else f"{blob}/"
