"""One OpenBSD disk image file, made ready for both clouds' image import.

The user hands one file, raw or qcow2. This module, which imports no Pulumi, checks it and
converts it once per content (cached by the file's sha256):

* **AWS** (VM Import / ``ImportSnapshot``) takes RAW, VHD/VHDX or stream-optimized VMDK. We give
  it **raw**: it is exactly the bytes the guest sees (sector 0 is checked on the output), needs
  no sub-format options that VM Import is strict about (its VMDK reader refuses several
  ``qemu-img`` VMDK flavours), and is sparse on the local disk. The price is upload size: S3
  receives the full virtual size (an OpenBSD cloud image is a few GiB; a stream-optimized VMDK
  would be smaller on the wire).
* **Azure** takes only a **fixed-size VHD** whose virtual size is a whole number of MiB, uploaded
  as a page blob. We round the raw up to a MiB boundary (``qemu-img resize``), convert with
  ``qemu-img convert -O vpc -o subformat=fixed,force_size`` (without ``force_size`` qemu rounds
  to a CHS geometry and the size is no longer MiB-aligned), and check the footer with
  :func:`check_fixed_vhd` before anything is uploaded.

Converted files live in ``~/.cache/cross-cloud-vpn/images`` (``XDG_CACHE_HOME`` is honoured),
named by the source's sha256; a conversion writes to a temporary name and is renamed into place
only when complete and checked, so an interrupted run never leaves a file that looks valid.

``qemu-img`` comes from the Debian/Ubuntu package ``qemu-utils`` (``brew install qemu`` on
macOS).

:func:`upload_page_blob` (also ``python -m cross_cloud_vpn.disk_image upload-page-blob``) puts
a fixed VHD into an Azure page blob over the Blob REST API with a SAS, standard library only:
the ``azure-native`` provider's ``storage.Blob`` creates only block and append blobs (and reads
the whole source into memory for a single Put Blob), and Azure builds images only from page
blobs. Chunks that are all zeros are not sent: an unwritten page of a page blob reads as zeros.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MIB = 1 << 20
#: Smallest file taken as a disk image at all (an OpenBSD image is hundreds of MiB at least).
MIN_IMAGE_BYTES = MIB
QEMU_PACKAGE = "qemu-utils"
VHD_FOOTER_BYTES = 512
VHD_COOKIE = b"conectix"
VHD_DISK_TYPES = {2: "fixed", 3: "dynamic", 4: "differencing"}
#: Azure's largest page in one Put Page call.
PAGE_BLOB_CHUNK = 4 * MIB
BLOB_API_VERSION = "2021-08-06"

ImageFormat = Literal["raw", "qcow2"]


class DiskImageError(Exception):
    """The image cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`inspect_image` found out about a source image."""

    path: Path
    format: ImageFormat
    virtual_size: int
    file_size: int
    sha256: str

    @property
    def short_hash(self) -> str:
        """First 12 hex digits of the sha256: what resource names carry."""
        return self.sha256[:12]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cross-cloud-vpn" / "images"


def qemu_img() -> str:
    """Path of ``qemu-img``, or a :class:`DiskImageError` telling which package to install."""
    found = shutil.which("qemu-img")
    if found is None:
        raise DiskImageError(
            f"qemu-img not found on PATH: install the package {QEMU_PACKAGE} "
            f"(apt-get install -y {QEMU_PACKAGE}; on macOS: brew install qemu)"
        )
    return found


def _run(args: Sequence[str], what: Path) -> str:
    """Run one ``qemu-img`` command; its stderr becomes the error message naming ``what``."""
    try:
        done = subprocess.run([qemu_img(), *args], capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DiskImageError(f"{what}: cannot run qemu-img: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise DiskImageError(
            f"{what}: qemu-img {args[0]} failed: {detail[-1] if detail else f'exit {done.returncode}'}"
        )
    return done.stdout


def sha256_file(path: Path, chunk: int = MIB) -> str:
    """The file's sha256, read in ``chunk``-sized pieces (never whole into memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _has_boot_signature(sector0: bytes) -> bool:
    """MBR signature 0x55AA at offset 510 (a GPT disk carries it in its protective MBR)."""
    return len(sector0) >= 512 and sector0[510:512] == b"\x55\xaa"


def _first_sector(path: Path, fmt: ImageFormat) -> bytes:
    if fmt == "raw":
        with path.open("rb") as f:
            return f.read(512)
    with tempfile.TemporaryDirectory(prefix="ccvpn-sector0-") as tmp:
        out = Path(tmp) / "sector0"
        _run(["dd", "-f", fmt, "-O", "raw", "bs=512", "count=1", f"if={path}", f"of={out}"], path)
        return out.read_bytes()


def inspect_image(path: str | os.PathLike[str]) -> ImageInfo:
    """Check that ``path`` is a raw or qcow2 disk image with a boot sector, and describe it."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DiskImageError(f"{p}: no such file")
    if not p.is_file():
        raise DiskImageError(f"{p}: not a regular file")
    try:
        with p.open("rb"):
            pass
    except OSError as exc:
        raise DiskImageError(f"{p}: cannot be read: {exc.strerror or exc}") from exc
    file_size = p.stat().st_size
    try:
        info = json.loads(_run(["info", "--output=json", str(p)], p))
    except json.JSONDecodeError as exc:
        raise DiskImageError(f"{p}: qemu-img info printed no JSON: {exc}") from exc
    fmt = info.get("format")
    if fmt not in ("raw", "qcow2"):
        raise DiskImageError(f"{p}: is a {fmt!r} image; give a raw or qcow2 file")
    if fmt == "raw" and file_size < MIN_IMAGE_BYTES:
        raise DiskImageError(
            f"{p}: too small to be a disk image ({file_size} bytes; at least {MIN_IMAGE_BYTES})"
        )
    if info.get("backing-filename"):
        raise DiskImageError(
            f"{p}: has a backing file ({info['backing-filename']}); flatten it first "
            f"(qemu-img convert -O qcow2 {p} flat.qcow2)"
        )
    if info.get("encrypted"):
        raise DiskImageError(f"{p}: is encrypted; give an unencrypted image")
    virtual_size = int(info.get("virtual-size", 0))
    if virtual_size < MIN_IMAGE_BYTES:
        raise DiskImageError(
            f"{p}: disk too small ({virtual_size} bytes virtual; at least {MIN_IMAGE_BYTES})"
        )
    if not _has_boot_signature(_first_sector(p, fmt)):
        raise DiskImageError(
            f"{p}: not a bootable disk image: no MBR/GPT signature 0x55AA at the end of sector 0 "
            f"(qemu-img reads any file as {fmt})"
        )
    return ImageInfo(path=p, format=fmt, virtual_size=virtual_size, file_size=file_size,
                     sha256=sha256_file(p))


@contextlib.contextmanager
def _temporary(cache: Path, name: str) -> Iterator[Path]:
    """A temporary path next to ``cache/name``, removed unless it was renamed into place."""
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=cache)
    os.close(fd)
    path = Path(tmp)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _cache(cache_dir: str | os.PathLike[str] | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def _raw_virtual_size(path: Path) -> int:
    info = json.loads(_run(["info", "--output=json", "-f", "raw", str(path)], path))
    return int(info["virtual-size"])


def prepare_for_aws(
    path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None,
    info: ImageInfo | None = None,
) -> Path:
    """A raw copy of the image for AWS VM Import, converted once per sha256 and reused."""
    info = info or inspect_image(path)
    cache = _cache(cache_dir)
    target = cache / f"{info.sha256}.aws.raw"
    if target.is_file() and target.stat().st_size == info.virtual_size:
        return target
    with _temporary(cache, target.name) as tmp:
        _run(["convert", "-f", info.format, "-O", "raw", str(info.path), str(tmp)], info.path)
        if tmp.stat().st_size != info.virtual_size:
            raise DiskImageError(
                f"{info.path}: raw conversion is {tmp.stat().st_size} bytes, expected {info.virtual_size}"
            )
        if not _has_boot_signature(_first_sector(tmp, "raw")):
            raise DiskImageError(f"{info.path}: the raw conversion lost the boot sector")
        os.replace(tmp, target)
    return target


def prepare_for_azure(
    path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None,
    info: ImageInfo | None = None,
) -> Path:
    """A fixed-size, MiB-aligned VHD for Azure, converted once per sha256, checked, reused."""
    info = info or inspect_image(path)
    cache = _cache(cache_dir)
    target = cache / f"{info.sha256}.azure.vhd"
    if target.is_file():
        try:
            check_fixed_vhd(target)
            return target
        except DiskImageError:
            target.unlink()  # a damaged cache entry is made again
    aligned = -(-info.virtual_size // MIB) * MIB
    with _temporary(cache, f"{info.sha256}.azure.raw") as raw, _temporary(cache, target.name) as vhd:
        _run(["convert", "-f", info.format, "-O", "raw", str(info.path), str(raw)], info.path)
        if aligned != info.virtual_size:
            _run(["resize", "-f", "raw", str(raw), str(aligned)], info.path)
        if _raw_virtual_size(raw) != aligned:
            raise DiskImageError(f"{info.path}: could not round the raw copy up to {aligned} bytes")
        _run(["convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size", str(raw), str(vhd)],
             info.path)
        size = check_fixed_vhd(vhd)
        if size != aligned:
            raise DiskImageError(f"{info.path}: the VHD holds {size} bytes, expected {aligned}")
        os.replace(vhd, target)
    return target


def vhd_footer_checksum(footer: bytes) -> int:
    """One's complement of the byte sum of the footer with its checksum field (64..67) zeroed."""
    total: int = sum(footer[:64]) + sum(footer[68:512])
    return ~total & 0xFFFFFFFF


def check_fixed_vhd(path: str | os.PathLike[str]) -> int:
    """Check the 512-byte footer of a VHD for Azure; return its virtual size in bytes.

    Azure takes a fixed VHD (disk type 2) whose current size is the file size less the footer
    and a whole number of MiB, with a valid footer checksum. Anything else is a
    :class:`DiskImageError` that says what is wrong.
    """
    p = Path(path)
    try:
        file_size = p.stat().st_size
        if file_size < VHD_FOOTER_BYTES + MIB:
            raise DiskImageError(f"{p}: {file_size} bytes: too small for a VHD of at least 1 MiB")
        with p.open("rb") as f:
            f.seek(file_size - VHD_FOOTER_BYTES)
            footer = f.read(VHD_FOOTER_BYTES)
    except OSError as exc:
        raise DiskImageError(f"{p}: cannot be read: {exc.strerror or exc}") from exc
    if footer[:8] != VHD_COOKIE:
        raise DiskImageError(f"{p}: no VHD footer: cookie is {footer[:8]!r}, not {VHD_COOKIE!r}")
    stored = int.from_bytes(footer[64:68], "big")
    expected = vhd_footer_checksum(footer)
    if stored != expected:
        raise DiskImageError(f"{p}: VHD footer checksum is {stored:#010x}, should be {expected:#010x}")
    disk_type = int.from_bytes(footer[60:64], "big")
    if disk_type != 2:
        kind = VHD_DISK_TYPES.get(disk_type, "unknown")
        raise DiskImageError(f"{p}: VHD disk type is {disk_type} ({kind}); Azure needs 2 (fixed)")
    current = int.from_bytes(footer[48:56], "big")
    if current != file_size - VHD_FOOTER_BYTES:
        raise DiskImageError(
            f"{p}: VHD current size {current} differs from the file size less the footer "
            f"({file_size - VHD_FOOTER_BYTES})"
        )
    if current % MIB:
        raise DiskImageError(
            f"{p}: VHD virtual size {current} is not a whole number of MiB "
            f"({current / MIB:.3f} MiB)"
        )
    return current


# --- Azure page blob upload -----------------------------------------------------------------

Sender = Callable[[urllib.request.Request], int]


def _send(request: urllib.request.Request) -> int:
    """Send one request; the HTTP status, also for error statuses."""
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _with_sas(url: str, sas: str, **query: str) -> str:
    parts = [sas.lstrip("?"), urllib.parse.urlencode(query)]
    return f"{url}?{'&'.join(p for p in parts if p)}"


def upload_page_blob(
    path: str | os.PathLike[str], blob_url: str, sas: str, *, chunk: int = PAGE_BLOB_CHUNK,
    send: Sender = _send, retries: int = 3,
) -> tuple[int, int]:
    """Upload a fixed VHD to ``blob_url`` as a page blob; return (bytes sent, bytes in the blob).

    Creates (or overwrites) the page blob at the file's size, then writes each ``chunk`` that
    is not all zeros with Put Page. The file is checked with :func:`check_fixed_vhd` first.
    """
    p = Path(path)
    check_fixed_vhd(p)
    if chunk % 512 or not 0 < chunk <= PAGE_BLOB_CHUNK:
        raise ValueError(f"chunk must be a multiple of 512 up to {PAGE_BLOB_CHUNK}")
    size = p.stat().st_size
    base = {"x-ms-version": BLOB_API_VERSION}

    def attempt(request: urllib.request.Request) -> None:
        for n in range(retries + 1):
            try:
                status = send(request)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if n == retries:
                    raise DiskImageError(f"{p}: upload to {blob_url} failed: {exc}") from exc
                continue
            if 200 <= status < 300:
                return
            if n == retries or status < 500:
                raise DiskImageError(f"{p}: upload to {blob_url} failed: HTTP {status}")

    attempt(urllib.request.Request(
        _with_sas(blob_url, sas), method="PUT", data=b"",
        headers={**base, "x-ms-blob-type": "PageBlob", "x-ms-blob-content-length": str(size),
                 "x-ms-blob-content-type": "application/octet-stream", "Content-Length": "0"},
    ))
    sent = 0
    zero = bytes(chunk)
    with p.open("rb") as f:
        offset = 0
        while offset < size:
            data = f.read(chunk)
            if data != zero[: len(data)]:
                attempt(urllib.request.Request(
                    _with_sas(blob_url, sas, comp="page"), method="PUT", data=data,
                    headers={**base, "x-ms-page-write": "update", "Content-Length": str(len(data)),
                             "x-ms-range": f"bytes={offset}-{offset + len(data) - 1}"},
                ))
                sent += len(data)
            offset += len(data)
    return sent, size


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cross_cloud_vpn.disk_image inspect|aws|azure|check-vhd|upload-page-blob``."""
    parser = argparse.ArgumentParser(prog="python -m cross_cloud_vpn.disk_image",
                                     description="Check, convert and upload one OpenBSD disk image.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("inspect", "aws", "azure", "check-vhd"):
        sp = sub.add_parser(name)
        sp.add_argument("path")
        sp.add_argument("--cache-dir")
    up = sub.add_parser("upload-page-blob", help="SAS token from the environment variable CCVPN_BLOB_SAS")
    up.add_argument("path")
    up.add_argument("url")
    args = parser.parse_args(argv)
    try:
        if args.command == "inspect":
            info = inspect_image(args.path)
            print(json.dumps({"path": str(info.path), "format": info.format,
                              "virtual_size": info.virtual_size, "file_size": info.file_size,
                              "sha256": info.sha256}))
        elif args.command == "aws":
            print(prepare_for_aws(args.path, args.cache_dir))
        elif args.command == "azure":
            print(prepare_for_azure(args.path, args.cache_dir))
        elif args.command == "check-vhd":
            print(f"{args.path}: fixed VHD, {check_fixed_vhd(args.path)} bytes")
        else:
            sas = os.environ.get("CCVPN_BLOB_SAS", "")
            if not sas:
                raise DiskImageError("CCVPN_BLOB_SAS is not set")
            sent, size = upload_page_blob(args.path, args.url, sas)
            print(f"uploaded {args.path} to {args.url}: {sent} of {size} bytes sent (zero pages skipped)")
    except DiskImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
