"""AwsImage and AzureImage registered by the real Pulumi SDK against the lab cloud.

The SDK's generated classes reject unknown properties, so a clean registration proves the
property names; the assertions pin what keeps the image private and what makes the import
chain (object -> snapshot -> AMI, VHD -> page blob -> image) point at the right thing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest

from cross_cloud_vpn.components.images import (
    AwsImage,
    AwsImageArgs,
    AzureImage,
    AzureImageArgs,
    short_hash,
    storage_account_name,
)
from cross_cloud_vpn.lab_cloud import DEFAULT_LOOKUPS, Evaluation, Registration, evaluate

SHA_A = "a1" * 32
SHA_B = "b2" * 32
SUBSCRIPTION = DEFAULT_LOOKUPS["azure-native:authorization:getClientConfig"]["subscriptionId"]
LAB_SAS = DEFAULT_LOOKUPS["azure-native:storage:listStorageAccountServiceSAS"]["serviceSasToken"]


def program(tmp_path: Path, sha: str = SHA_A, **azure: Any) -> Callable[[], dict[str, Any]]:
    raw, vhd = tmp_path / "image.raw", tmp_path / "image.vhd"
    raw.write_bytes(b"raw")
    vhd.write_bytes(b"vhd")

    def build() -> dict[str, Any]:
        aws_image = AwsImage("ccvpn-dev-aws-image", AwsImageArgs(
            source_path=str(raw), sha256=sha, tags={"project": "cross-cloud-vpn"}))
        azure_image = AzureImage("ccvpn-dev-azure-image", AzureImageArgs(
            source_path=str(vhd), sha256=sha, resource_group_name="ccvpn-dev-rg", location="westeurope",
            tags={"project": "cross-cloud-vpn"}, python="/usr/bin/python3", **azure))
        return {"ami_id": aws_image.ami_id, "image_id": azure_image.image_id,
                "blob_url": azure_image.blob_url, "account": azure_image.storage_account_name}

    return build


@pytest.fixture()
def ev(tmp_path: Path) -> Evaluation:
    return evaluate(program(tmp_path), {}, set())


def one(ev: Evaluation, typ: str) -> Registration:
    found = ev.by_type(typ)
    assert len(found) == 1, [r.name for r in found]
    return found[0]


# --- AWS --------------------------------------------------------------------------------------

def test_bucket_is_private_owner_only_and_encrypted(ev: Evaluation) -> None:
    bucket = one(ev, "aws:s3/bucket:Bucket")
    block = one(ev, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert {k: block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                  "restrictPublicBuckets")} == dict.fromkeys(
        ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"), True)
    ownership = one(ev, "aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    sse = one(ev, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert sse.inputs["rules"] == [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]
    bucket_id = bucket.state["bucket"]
    for reg in (block, ownership, sse.inputs):
        assert reg["bucket"] == bucket_id
    assert "acl" not in bucket.inputs and "policy" not in bucket.inputs


def test_object_is_the_file_under_a_content_addressed_key(ev: Evaluation, tmp_path: Path) -> None:
    obj = one(ev, "aws:s3/bucketObjectv2:BucketObjectv2")
    assert obj.inputs["key"] == f"images/{SHA_A}.raw"
    assert isinstance(obj.inputs["source"], pulumi.FileAsset)
    assert obj.inputs["source"].path == str(tmp_path / "image.raw")
    assert obj.inputs["serverSideEncryption"] == "AES256"
    assert set(obj.dependencies) >= {
        one(ev, t).urn for t in (
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        )
    }, "nothing is uploaded before the bucket is locked down"


def test_vmimport_role_trusts_only_vmie_and_reads_only_this_bucket(ev: Evaluation) -> None:
    role = one(ev, "aws:iam/role:Role")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    (stmt,) = trust["Statement"]
    assert stmt["Principal"] == {"Service": "vmie.amazonaws.com"} and stmt["Action"] == "sts:AssumeRole"
    assert stmt["Condition"] == {"StringEquals": {"sts:ExternalId": "vmimport"}}
    policy_reg = one(ev, "aws:iam/rolePolicy:RolePolicy")
    assert policy_reg.inputs["role"] == role.state["name"]
    policy = json.loads(policy_reg.inputs["policy"])
    arn = one(ev, "aws:s3/bucket:Bucket").state["arn"]
    by_action = {a: s["Resource"] for s in policy["Statement"] for a in s["Action"]}
    assert by_action["s3:GetObject"] == f"{arn}/*"
    assert by_action["s3:ListBucket"] == by_action["s3:GetBucketLocation"] == arn
    s3_actions = {a for a in by_action if a.startswith("s3:")}
    assert s3_actions == {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"}, "read-only S3"
    assert {a for a in by_action if a.startswith("ec2:")} == {
        "ec2:ModifySnapshotAttribute", "ec2:CopySnapshot", "ec2:RegisterImage", "ec2:Describe*"}
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    assert not [a for a in by_action if a in ("*", "s3:*", "ec2:*", "iam:PassRole")]


def test_snapshot_import_points_at_the_uploaded_object_and_ami_at_the_snapshot(ev: Evaluation) -> None:
    bucket = one(ev, "aws:s3/bucket:Bucket")
    obj = one(ev, "aws:s3/bucketObjectv2:BucketObjectv2")
    role = one(ev, "aws:iam/role:Role")
    snap = one(ev, "aws:ebs/snapshotImport:SnapshotImport")
    container = snap.inputs["diskContainer"]
    assert container["format"] == "RAW"
    assert container["userBucket"] == {"s3Bucket": bucket.state["bucket"], "s3Key": obj.inputs["key"]}
    assert snap.inputs["roleName"] == role.state["name"] and snap.inputs["encrypted"] is True
    assert one(ev, "aws:iam/rolePolicy:RolePolicy").urn in snap.dependencies, "import waits for its policy"
    assert set(snap.property_dependencies["diskContainer"]) >= {bucket.urn, obj.urn}

    ami = one(ev, "aws:ec2/ami:Ami")
    i = ami.inputs
    assert (i["virtualizationType"], i["architecture"], i["enaSupport"], i["bootMode"]) == (
        "hvm", "x86_64", True, "legacy-bios")
    (root,) = i["ebsBlockDevices"]
    assert root["deviceName"] == i["rootDeviceName"] == "/dev/sda1"
    assert root["snapshotId"].startswith("snap-")
    assert snap.urn in ami.property_dependencies["ebsBlockDevices"], "the root volume is the snapshot"
    assert root["deleteOnTermination"] is True
    assert ev.outputs["ami_id"].startswith("ami-")


def test_aws_args_are_options(tmp_path: Path) -> None:
    def build() -> dict[str, Any]:
        image = AwsImage("img", AwsImageArgs(source_path=str(tmp_path / "x.vmdk"), sha256=SHA_B,
                                             disk_format="VMDK", ena_support=False,
                                             root_device_name="/dev/xvda"))
        return {"ami": image.ami_id}

    ev = evaluate(build, {}, set())
    assert one(ev, "aws:ebs/snapshotImport:SnapshotImport").inputs["diskContainer"]["format"] == "VMDK"
    assert one(ev, "aws:s3/bucketObjectv2:BucketObjectv2").inputs["key"] == f"images/{SHA_B}.vmdk"
    ami = one(ev, "aws:ec2/ami:Ami").inputs
    assert ami["enaSupport"] is False and ami["rootDeviceName"] == "/dev/xvda"
    assert ami["ebsBlockDevices"][0]["deviceName"] == "/dev/xvda"


def test_snapshot_import_ignores_exactly_the_encryption_fields_the_provider_reads_back(
    ev: Evaluation,
) -> None:
    """Both are force-new and read back from the snapshot: without this, every up replaced it."""
    snap = one(ev, "aws:ebs/snapshotImport:SnapshotImport")
    assert snap.inputs["encrypted"] is True, "the import still asks for an encrypted snapshot"
    assert sorted(snap.ignore_changes) == ["encrypted", "kmsKeyId"], snap.urn


def test_ami_is_deregistered_before_its_replacement_registers_the_same_name(ev: Evaluation) -> None:
    ami = one(ev, "aws:ec2/ami:Ami")
    assert ami.inputs["name"] == ami.name, "the AMI name is fixed (content-addressed)"
    assert ami.delete_before_replace, f"{ami.urn}: a replacement would fail with InvalidAMIName.Duplicate"


def test_image_object_gets_at_most_ten_tags_whatever_tags_the_caller_gives(tmp_path: Path) -> None:
    many = {f"tag{i}": "x" for i in range(12)}

    def build() -> dict[str, Any]:
        image = AwsImage("img", AwsImageArgs(source_path=str(tmp_path / "x.raw"), sha256=SHA_A, tags=many))
        return {"ami": image.ami_id}

    ev = evaluate(build, {}, set())
    obj = one(ev, "aws:s3/bucketObjectv2:BucketObjectv2")
    assert len(obj.inputs["tags"]) <= 10, f"{obj.urn}: S3 takes at most 10 tags per object"
    assert obj.inputs["tags"]["ImageSha256"] == SHA_A
    assert one(ev, "aws:s3/bucket:Bucket").inputs["tags"].items() >= many.items(), "the bucket keeps them"


# --- Azure ------------------------------------------------------------------------------------

def test_storage_account_and_container_are_private(ev: Evaluation) -> None:
    sa = one(ev, "azure-native:storage:StorageAccount").inputs
    assert sa["allowBlobPublicAccess"] is False
    assert sa["minimumTlsVersion"] == "TLS1_2" and sa["enableHttpsTrafficOnly"] is True
    assert sa["kind"] == "StorageV2" and sa["location"] == "westeurope"
    assert sa["accountName"] == storage_account_name("ccvpn-dev-azure-image", SUBSCRIPTION)
    assert len(sa["accountName"]) == 24 and sa["accountName"].isalnum() and sa["accountName"].islower()
    container = one(ev, "azure-native:storage:BlobContainer").inputs
    assert container["publicAccess"] == "None"
    assert container["accountName"] == sa["accountName"]


def test_vhd_goes_up_as_a_page_blob_with_a_narrow_secret_sas(ev: Evaluation, tmp_path: Path) -> None:
    upload = one(ev, "command:local:Command")
    create = upload.inputs["create"]
    assert create.startswith("/usr/bin/python3 -m cross_cloud_vpn.disk_image upload-page-blob ")
    assert str(tmp_path / "image.vhd") in create
    env = upload.inputs["environment"]
    assert env["CCVPN_BLOB_URL"] == ev.outputs["blob_url"]
    assert env["CCVPN_BLOB_SAS"] == LAB_SAS and "environment" in upload.secret_inputs
    assert upload.inputs["triggers"][0] == SHA_A
    sas_token = "azure-native:storage:listStorageAccountServiceSAS"
    ((_, sas_args),) = [c for c in ev.cloud.calls if c[0] == sas_token]
    account = one(ev, "azure-native:storage:StorageAccount").inputs["accountName"]
    container = one(ev, "azure-native:storage:BlobContainer").inputs["containerName"]
    assert sas_args["canonicalizedResource"] == f"/blob/{account}/{container}/openbsd-{SHA_A}.vhd"
    assert (sas_args["resource"], sas_args["permissions"], sas_args["protocols"]) == ("b", "cw", "https")
    assert ev.outputs["blob_url"] == (
        f"https://{account}.blob.core.windows.net/{container}/openbsd-{SHA_A}.vhd")


def test_upload_runs_again_when_its_container_or_storage_account_is_made_anew(ev: Evaluation) -> None:
    """A new container (or account) is empty: the upload's triggers hold what is new about it."""
    upload = one(ev, "command:local:Command")
    container = one(ev, "azure-native:storage:BlobContainer")
    account = one(ev, "azure-native:storage:StorageAccount")
    assert set(upload.property_dependencies["triggers"]) >= {container.urn, account.urn}, upload.urn
    assert container.id in upload.inputs["triggers"] and account.id in upload.inputs["triggers"]
    assert SHA_A in upload.inputs["triggers"], "a new image file uploads again too"


def test_a_container_made_anew_gets_the_image_uploaded_again(ev: Evaluation, tmp_path: Path) -> None:
    container = one(ev, "azure-native:storage:BlobContainer")
    again = evaluate(program(tmp_path), {}, set(), previous=ev, replace=[(container.type, container.name)])
    upload = one(again, "command:local:Command")
    assert upload.action == "replace", f"{upload.urn}: {upload.action}; the new container stays empty"


def test_image_is_linux_generalized_from_the_blob_url(ev: Evaluation) -> None:
    image = one(ev, "azure-native:compute:Image")
    i = image.inputs
    assert i["hyperVGeneration"] == "V1" and i["location"] == "westeurope"
    assert i["resourceGroupName"] == "ccvpn-dev-rg"
    disk = i["storageProfile"]["osDisk"]
    assert (disk["osType"], disk["osState"]) == ("Linux", "Generalized")
    assert disk["blobUri"] == ev.outputs["blob_url"]
    assert one(ev, "command:local:Command").urn in image.dependencies, "the image waits for the upload"
    assert ev.outputs["image_id"].startswith("/subscriptions/")
    assert ev.outputs["image_id"].endswith("/" + i["imageName"])


def test_an_explicit_storage_account_name_skips_the_lookup(tmp_path: Path) -> None:
    ev = evaluate(program(tmp_path, storage_account_name="mystorageacct01"), {}, set())
    assert one(ev, "azure-native:storage:StorageAccount").inputs["accountName"] == "mystorageacct01"
    assert not [c for c in ev.cloud.calls if c[0] == "azure-native:authorization:getClientConfig"]


# --- both -------------------------------------------------------------------------------------

CONTENT_TYPES = ("aws:s3/bucketObjectv2:BucketObjectv2", "aws:ebs/snapshotImport:SnapshotImport",
                 "aws:ec2/ami:Ami", "azure-native:storage:BlobContainer", "command:local:Command",
                 "azure-native:compute:Image")
SHARED_TYPES = ("aws:s3/bucket:Bucket", "aws:iam/role:Role", "azure-native:storage:StorageAccount")


def test_names_carry_the_hash_and_a_new_file_makes_new_resources(ev: Evaluation, tmp_path: Path) -> None:
    h = short_hash(SHA_A)
    for typ in CONTENT_TYPES:
        assert h in one(ev, typ).name, typ
    assert h in one(ev, "aws:ec2/ami:Ami").inputs["name"]
    assert h in one(ev, "azure-native:storage:BlobContainer").inputs["containerName"]
    assert h in one(ev, "azure-native:compute:Image").inputs["imageName"]

    other = evaluate(program(tmp_path, sha=SHA_B), {}, set())
    for typ in CONTENT_TYPES:
        assert one(other, typ).name != one(ev, typ).name and short_hash(SHA_B) in one(other, typ).name
    assert one(other, "aws:s3/bucketObjectv2:BucketObjectv2").inputs["key"] == f"images/{SHA_B}.raw"
    for typ in SHARED_TYPES:
        assert one(other, typ).name == one(ev, typ).name, f"{typ} is shared by every image of a stack"
    same = evaluate(program(tmp_path), {}, set())
    assert sorted(r.name for r in same.resources) == sorted(r.name for r in ev.resources)


def test_every_child_is_parented_to_its_component(ev: Evaluation) -> None:
    components = {r.type: r for r in ev.resources if not r.custom}
    assert set(components) == {"cross-cloud-vpn:index:AwsImage", "cross-cloud-vpn:index:AzureImage"}
    aws_urn = components["cross-cloud-vpn:index:AwsImage"].urn
    azure_urn = components["cross-cloud-vpn:index:AzureImage"].urn
    children = [r for r in ev.resources if r.custom]
    assert len(children) == 13
    for r in children:
        expected = azure_urn if r.type.startswith(("azure-native:", "command:")) else aws_urn
        assert r.parent == expected, r.name


def test_preview_registers_everything_with_unknown_ids(tmp_path: Path) -> None:
    ev = evaluate(program(tmp_path), {}, set(), preview=True)
    assert len([r for r in ev.resources if r.custom]) == 13
    assert {"ami_id", "image_id"} <= ev.unknown_outputs


def test_a_bad_hash_or_format_is_refused_before_any_resource(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="64 lowercase hex"):
        short_hash("abc")
    with pytest.raises(ValueError, match="64 lowercase hex"):
        short_hash("A" * 64)
