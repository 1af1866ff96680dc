"""`imageFile`: one disk image imported into both clouds, wired through config and the program."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cross_cloud_vpn.lab_cloud import Evaluation, evaluate
from cross_cloud_vpn.program import build
from cross_cloud_vpn.stack_config import ConfigProblems, parse_settings
from tests.test_disk_image import make_disk

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img (qemu-utils)")
P = "cross-cloud-vpn:"
IMAGE_TYPES = {"aws:ec2/ami:Ami", "aws:ebs/snapshotImport:SnapshotImport", "azure-native:compute:Image"}


def with_image_file(values: dict[str, str], path: Path) -> dict[str, str]:
    aws, azure = json.loads(values[P + "aws"]), json.loads(values[P + "azure"])
    for key in ("amiId", "amiOwner", "amiNameFilter"):
        aws.pop(key, None)
    azure.pop("imageId", None)
    return {**values, P + "aws": json.dumps(aws), P + "azure": json.dumps(azure), P + "imageFile": str(path)}


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture()
def image_run(
    dev_config: tuple[dict[str, str], set[str]], iked_public_keys: dict[str, str], tmp_path: Path
) -> Evaluation:
    values = with_image_file(dev_config[0], make_disk(tmp_path / "openbsd.raw"))
    return evaluate(build, values, dev_config[1], public_keys=iked_public_keys)


def test_image_file_creates_both_images_and_the_gateways_boot_from_them(image_run: Evaluation) -> None:
    ev = image_run
    assert {r.type for r in ev.resources} >= IMAGE_TYPES
    (ami,) = ev.by_type("aws:ec2/ami:Ami")
    gateway = next(r for r in ev.by_type("aws:ec2/instance:Instance") if r.name.endswith("-aws-gateway"))
    assert ami.urn in gateway.property_dependencies["ami"], "the AWS gateway must boot the imported AMI"
    (image,) = ev.by_type("azure-native:compute:Image")
    vm = next(
        r for r in ev.by_type("azure-native:compute:VirtualMachine") if r.name.endswith("-azure-gateway")
    )
    assert image.urn in vm.property_dependencies["storageProfile"], "the Azure gateway must boot the image"
    groups = {r.inputs["resourceGroupName"] for r in ev.by_type("azure-native:resources:ResourceGroup")}
    assert groups == {"ccvpn-dev", "ccvpn-dev-images"}


def test_image_ids_create_no_image_resources(
    dev_config: tuple[dict[str, str], set[str]], iked_public_keys: dict[str, str]
) -> None:
    ev = evaluate(build, dev_config[0], dev_config[1], public_keys=iked_public_keys)
    assert not IMAGE_TYPES & {r.type for r in ev.resources}


def test_image_file_and_image_ids_together_are_refused(
    dev_config: tuple[dict[str, str], set[str]], tmp_path: Path
) -> None:
    values = {**dev_config[0], P + "imageFile": str(make_disk(tmp_path / "openbsd.raw"))}
    with pytest.raises(ConfigProblems) as caught:
        parse_settings(values, dev_config[1])
    text = str(caught.value)
    for fragment in ("imageFile", "aws.amiOwner", "aws.amiNameFilter", "azure.imageId", "both set"):
        assert fragment in text, text


@pytest.mark.parametrize("kind", ["missing", "not_a_disk"])
def test_bad_image_file_is_refused_naming_key_and_path(
    dev_config: tuple[dict[str, str], set[str]], tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "openbsd.raw"
    if kind == "not_a_disk":
        path.write_bytes(b"hello\n" * 400_000)
    with pytest.raises(ConfigProblems) as caught:
        parse_settings(with_image_file(dev_config[0], path), dev_config[1])
    assert f"'cross-cloud-vpn:imageFile' is '{path}'" in str(caught.value)
