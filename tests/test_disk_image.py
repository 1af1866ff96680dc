"""The disk image pipeline with the real qemu-img: inspect, convert for both clouds, check, cache.

The source disks are made here: 3 MiB + 5 KiB (deliberately not MiB-aligned) with an MBR
signature and recognisable data at the start, the middle and the very end, so a conversion
that loses or moves bytes is caught by comparing contents, not only sizes.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cross_cloud_vpn import disk_image
from cross_cloud_vpn.disk_image import (
    MIB,
    DiskImageError,
    check_fixed_vhd,
    inspect_image,
    prepare_for_aws,
    prepare_for_azure,
    upload_page_blob,
    vhd_footer_checksum,
)

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img (qemu-utils)")

SIZE = 3 * MIB + 5 * 1024


def make_disk(path: Path, size: int = SIZE) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
        f.seek(0)
        f.write(b"\xeb\x3c\x90OpenBSD-test-mbr")
        f.seek(510)
        f.write(b"\x55\xaa")
        if size > 2 * MIB:
            f.seek(MIB + 12345)
            f.write(b"middle-of-the-disk")
        f.seek(size - 16)
        f.write(b"last-16-bytes!!!")
    return path


def qemu(*args: str) -> str:
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture()
def raw(tmp_path: Path) -> Path:
    return make_disk(tmp_path / "openbsd.raw")


@pytest.fixture()
def qemu_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every qemu-img command the module runs (still run for real)."""
    calls: list[list[str]] = []
    real = disk_image._run

    def counting(args: Any, what: Path) -> str:
        calls.append(list(args))
        return real(args, what)

    monkeypatch.setattr(disk_image, "_run", counting)
    return calls


# --- inspect ----------------------------------------------------------------------------------

def test_inspect_raw_reports_format_size_and_streamed_sha256(raw: Path) -> None:
    info = inspect_image(raw)
    assert (info.format, info.virtual_size, info.file_size) == ("raw", SIZE, SIZE)
    assert info.sha256 == hashlib.sha256(raw.read_bytes()).hexdigest()
    assert info.short_hash == info.sha256[:12]


def test_inspect_qcow2(raw: Path, tmp_path: Path) -> None:
    q = tmp_path / "openbsd.qcow2"
    qemu("convert", "-f", "raw", "-O", "qcow2", str(raw), str(q))
    info = inspect_image(q)
    assert (info.format, info.virtual_size) == ("qcow2", SIZE)
    assert info.sha256 == hashlib.sha256(q.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing", "no such file"),
        ("directory", "not a regular file"),
        ("tiny", "too small"),
        ("text", "no MBR/GPT signature"),
        ("blank-qcow2", "no MBR/GPT signature"),
        ("small-qcow2", "disk too small"),
        ("vmdk", "give a raw or qcow2"),
    ],
)
def test_inspect_refuses_what_is_not_an_openbsd_disk(case: str, reason: str, tmp_path: Path) -> None:
    path = tmp_path / f"{case}.img"
    if case == "directory":
        path.mkdir()
    elif case == "tiny":
        make_disk(path, 512 * 1024)
    elif case == "text":
        path.write_text("not a disk\n" * 200_000)  # 2.2 MB of text: qemu-img calls it raw
    elif case == "blank-qcow2":
        qemu("create", "-f", "qcow2", str(path), "4M")
        with path.open("ab") as f:
            f.truncate(2 * MIB)  # big enough as a file, but sector 0 is empty
    elif case == "small-qcow2":
        qemu("create", "-f", "qcow2", str(path), "512K")
        with path.open("ab") as f:
            f.truncate(2 * MIB)
    elif case == "vmdk":
        qemu("create", "-f", "vmdk", str(path), "4M")
        with path.open("ab") as f:
            f.truncate(2 * MIB)
    with pytest.raises(DiskImageError) as err:
        inspect_image(path)
    assert str(path) in str(err.value) and reason in str(err.value)


def test_inspect_refuses_an_unreadable_file(raw: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        raw.chmod(0)
    else:  # root reads files whatever their mode: deny the open itself
        real_open = Path.open

        def denied(self: Path, *args: Any, **kwargs: Any) -> Any:
            if self == raw:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(DiskImageError, match="cannot be read: Permission denied") as err:
        inspect_image(raw)
    assert str(raw) in str(err.value)


def test_missing_qemu_img_names_the_package(raw: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DiskImageError, match="install the package qemu-utils"):
        inspect_image(raw)


# --- conversion -------------------------------------------------------------------------------

def test_aws_gets_a_byte_identical_raw(raw: Path, tmp_path: Path) -> None:
    out = prepare_for_aws(raw, tmp_path / "cache")
    assert out.read_bytes() == raw.read_bytes()
    assert out.name == f"{inspect_image(raw).sha256}.aws.raw"


def test_azure_gets_a_fixed_mib_aligned_vhd_with_the_same_bytes(raw: Path, tmp_path: Path) -> None:
    vhd = prepare_for_azure(raw, tmp_path / "cache")
    assert check_fixed_vhd(vhd) == 4 * MIB  # 3 MiB + 5 KiB rounded up
    data = vhd.read_bytes()
    assert len(data) == 4 * MIB + 512
    assert data[:SIZE] == raw.read_bytes() and data[SIZE : 4 * MIB] == bytes(4 * MIB - SIZE)
    info = qemu("info", "--output=json", "-f", "vpc", str(vhd))  # a fixed VHD probes as raw
    assert '"format": "vpc"' in info and f'"virtual-size": {4 * MIB}' in info
    assert not list((tmp_path / "cache").glob("*.part")), "temporary files are cleaned up"


def test_qcow2_input_converts_for_both_clouds(raw: Path, tmp_path: Path) -> None:
    q = tmp_path / "openbsd.qcow2"
    qemu("create", "-f", "qcow2", str(q), "3M")  # as the brief says: create, then fill by convert
    qemu("convert", "-f", "raw", "-O", "qcow2", str(raw), str(q))
    cache = tmp_path / "cache"
    assert prepare_for_aws(q, cache).read_bytes() == raw.read_bytes()
    vhd = prepare_for_azure(q, cache)
    assert check_fixed_vhd(vhd) == 4 * MIB
    assert vhd.read_bytes()[:SIZE] == raw.read_bytes()


def test_an_already_aligned_disk_is_not_resized(tmp_path: Path, qemu_calls: list[list[str]]) -> None:
    disk = make_disk(tmp_path / "aligned.raw", 2 * MIB)
    vhd = prepare_for_azure(disk, tmp_path / "cache")
    assert check_fixed_vhd(vhd) == 2 * MIB
    assert not [c for c in qemu_calls if c[0] == "resize"]


def test_conversions_are_cached_by_sha256(raw: Path, tmp_path: Path, qemu_calls: list[list[str]]) -> None:
    cache = tmp_path / "cache"
    aws, azure = prepare_for_aws(raw, cache), prepare_for_azure(raw, cache)
    converts = sum(1 for c in qemu_calls if c[0] == "convert")
    assert converts == 3  # raw for AWS; raw then vpc for Azure
    mtimes = aws.stat().st_mtime_ns, azure.stat().st_mtime_ns
    qemu_calls.clear()
    assert prepare_for_aws(raw, cache) == aws and prepare_for_azure(raw, cache) == azure
    assert not [c for c in qemu_calls if c[0] in ("convert", "resize")]
    assert (aws.stat().st_mtime_ns, azure.stat().st_mtime_ns) == mtimes
    # A copy of the same bytes elsewhere hits the same cache entries.
    copy = tmp_path / "copy.raw"
    shutil.copyfile(raw, copy)
    qemu_calls.clear()
    assert prepare_for_azure(copy, cache) == azure
    assert not [c for c in qemu_calls if c[0] == "convert"]
    # Different bytes: a new entry.
    with copy.open("r+b") as f:
        f.seek(MIB)
        f.write(b"changed")
    assert prepare_for_azure(copy, cache) != azure


def test_a_damaged_cache_entry_is_made_again(raw: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    vhd = prepare_for_azure(raw, cache)
    good = vhd.read_bytes()
    vhd.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(DiskImageError):
        check_fixed_vhd(vhd)
    again = prepare_for_azure(raw, cache)
    assert check_fixed_vhd(again) == 4 * MIB
    assert again.read_bytes()[:-512] == good[:-512]  # the footer's timestamp and UUID are new


def test_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert disk_image.default_cache_dir() == tmp_path / "cross-cloud-vpn" / "images"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert disk_image.default_cache_dir() == tmp_path / ".cache" / "cross-cloud-vpn" / "images"


# --- the fixed VHD check can fail -------------------------------------------------------------

@pytest.fixture()
def good_vhd(raw: Path, tmp_path: Path) -> Path:
    return prepare_for_azure(raw, tmp_path / "cache")


def rewrite_footer(vhd: Path, offset: int, value: bytes, fix_checksum: bool = True) -> None:
    data = bytearray(vhd.read_bytes())
    footer = bytearray(data[-512:])
    footer[offset : offset + len(value)] = value
    if fix_checksum:
        footer[64:68] = vhd_footer_checksum(bytes(footer)).to_bytes(4, "big")
    data[-512:] = footer
    vhd.write_bytes(bytes(data))


def test_footer_checksum_matches_qemu(good_vhd: Path) -> None:
    footer = good_vhd.read_bytes()[-512:]
    assert int.from_bytes(footer[64:68], "big") == vhd_footer_checksum(footer)


@pytest.mark.parametrize("offset", [0, 20, 48, 60, 100, 511])
def test_a_flipped_footer_byte_is_refused(good_vhd: Path, offset: int) -> None:
    data = bytearray(good_vhd.read_bytes())
    data[-512 + offset] ^= 0x01
    good_vhd.write_bytes(bytes(data))
    with pytest.raises(DiskImageError, match=r"cookie|checksum") as err:
        check_fixed_vhd(good_vhd)
    assert str(good_vhd) in str(err.value)


def test_a_dynamic_vhd_is_refused(raw: Path, tmp_path: Path) -> None:
    aligned = make_disk(tmp_path / "aligned.raw", 4 * MIB)
    dynamic = tmp_path / "dynamic.vhd"
    qemu("convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic,force_size",
         str(aligned), str(dynamic))
    with pytest.raises(DiskImageError, match=r"disk type is 3 \(dynamic\)"):
        check_fixed_vhd(dynamic)


def test_a_fixed_vhd_of_an_unaligned_size_is_refused(raw: Path, tmp_path: Path) -> None:
    vhd = tmp_path / "unaligned.vhd"
    qemu("convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size", str(raw), str(vhd))
    with pytest.raises(DiskImageError, match="not a whole number of MiB"):
        check_fixed_vhd(vhd)


def test_qemu_without_force_size_is_not_mib_aligned_and_is_refused(tmp_path: Path) -> None:
    """Why force_size: qemu otherwise rounds the size to a CHS geometry."""
    disk = make_disk(tmp_path / "d.raw", 7 * MIB)
    vhd = tmp_path / "chs.vhd"
    qemu("convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed", str(disk), str(vhd))
    with pytest.raises(DiskImageError, match="not a whole number of MiB"):
        check_fixed_vhd(vhd)


def test_a_size_mismatch_and_a_non_vhd_are_refused(good_vhd: Path, raw: Path) -> None:
    rewrite_footer(good_vhd, 48, (2 * MIB).to_bytes(8, "big"))
    with pytest.raises(DiskImageError, match="differs from the file size"):
        check_fixed_vhd(good_vhd)
    with pytest.raises(DiskImageError, match="no VHD footer"):
        check_fixed_vhd(raw)


# --- Azure page blob upload, against a local stand-in for the Blob REST API ------------------

class FakePageBlobService(http.server.BaseHTTPRequestHandler):
    blobs: dict[str, bytearray]
    log: list[tuple[str, str, dict[str, str], int]]

    def do_PUT(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.log.append((url.path, url.query, headers, len(body)))
        if query.get("sig") != ["s3cret"] or headers.get("x-ms-version") is None:
            return self._reply(403)
        if query.get("comp") == ["page"]:
            blob = self.blobs.get(url.path)
            start, end = (int(x) for x in headers["x-ms-range"].removeprefix("bytes=").split("-"))
            ok = (blob is not None and headers.get("x-ms-page-write") == "update" and start % 512 == 0
                  and (end + 1) % 512 == 0 and end - start + 1 == len(body) <= 4 * MIB and end < len(blob))
            if not ok or blob is None:
                return self._reply(400)
            blob[start : end + 1] = body
            return self._reply(201)
        if headers.get("x-ms-blob-type") != "PageBlob" or body:
            return self._reply(400)
        size = int(headers["x-ms-blob-content-length"])
        if size % 512:
            return self._reply(400)
        self.blobs[url.path] = bytearray(size)
        return self._reply(201)

    def _reply(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def blob_service() -> Iterator[tuple[str, type[FakePageBlobService]]]:
    handler = type("Handler", (FakePageBlobService,), {"blobs": {}, "log": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_page_blob_upload_writes_every_byte_and_skips_zero_pages(
    good_vhd: Path, blob_service: tuple[str, type[FakePageBlobService]]
) -> None:
    base, service = blob_service
    url = f"{base}/images/openbsd-abc.vhd"
    sent, size = upload_page_blob(good_vhd, url, "?sv=x&sig=s3cret", chunk=MIB)
    assert service.blobs["/images/openbsd-abc.vhd"] == good_vhd.read_bytes()
    assert size == 4 * MIB + 512
    # chunks: [0,1M) MBR, [1M,2M) middle, [2M,3M) zero, [3M,4M) end data, [4M,4M+512) footer
    assert sent == 3 * MIB + 512
    assert service.log[0][2]["x-ms-blob-type"] == "PageBlob" and "comp=page" not in service.log[0][1]


def test_page_blob_upload_checks_the_vhd_first_and_reports_http_errors(
    good_vhd: Path, raw: Path, blob_service: tuple[str, type[FakePageBlobService]]
) -> None:
    base, service = blob_service
    with pytest.raises(DiskImageError, match="no VHD footer"):
        upload_page_blob(raw, f"{base}/c/raw.vhd", "sig=s3cret")
    assert not service.log, "nothing is sent for a file that is not a fixed VHD"
    with pytest.raises(DiskImageError, match="HTTP 403"):
        upload_page_blob(good_vhd, f"{base}/c/x.vhd", "sig=wrong")
