"""Safe extraction of policy archives (zip, tar.gz, tar.xz).

Every member is checked before anything is written: a name that is absolute
or climbs out with `..`, a link whose target lands outside the folder, a
device, FIFO or other special file is refused with the member's name. The
total size is capped so a small archive cannot fill the disk.
"""

from __future__ import annotations

import lzma
import posixpath
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from aggregator.policies.errors import PolicyLoadError

__all__ = ["ArchiveError", "archive_kind", "extract_archive"]

_MAGIC = (
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # empty zip
    (b"\x1f\x8b", "tar.gz"),
    (b"\xfd7zXZ\x00", "tar.xz"),
)


class ArchiveError(PolicyLoadError):
    """The archive is unreadable or a member would escape its folder."""


# what the decompressors and archive readers raise on corrupt input
_CORRUPT = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, tarfile.TarError, NotImplementedError, RuntimeError)


def archive_kind(path: Path) -> str:
    """'zip', 'tar.gz' or 'tar.xz', from the file's first bytes (names can lie)."""
    with open(path, "rb") as f:
        head = f.read(8)
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    raise ArchiveError(f"{path.name}: not a zip, tar.gz or tar.xz archive")


def _checked_member_path(name: str, dest: Path) -> Path:
    """The path `name` extracts to, or ArchiveError if it leaves `dest`."""
    if not name or "\x00" in name:
        raise ArchiveError(f"archive member {name!r}: empty or invalid name")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise ArchiveError(f"archive member {name!r}: absolute path refused")
    if ".." in PurePosixPath(posix).parts:
        raise ArchiveError(f"archive member {name!r}: '..' would leave the policy folder")
    target = (dest / posix).resolve()
    if not target.is_relative_to(dest):
        raise ArchiveError(f"archive member {name!r}: lands outside the policy folder")
    return target


def _check_link_target(member_name: str, link_target: str, *, relative_to_member: bool, dest: Path) -> None:
    target = link_target.replace("\\", "/")
    if target.startswith("/"):
        raise ArchiveError(f"archive member {member_name!r}: link to absolute path {link_target!r} refused")
    base = posixpath.dirname(member_name.replace("\\", "/")) if relative_to_member else ""
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise ArchiveError(
            f"archive member {member_name!r}: link to {link_target!r} points outside the policy folder"
        )
    # a link may also escape through an earlier link; resolve on disk where possible
    if not (dest / resolved).resolve().is_relative_to(dest):
        raise ArchiveError(
            f"archive member {member_name!r}: link to {link_target!r} points outside the policy folder"
        )


def _extract_zip(path: Path, dest: Path, max_bytes: int) -> None:
    try:
        zf = zipfile.ZipFile(path)
    except (*_CORRUPT, OSError) as exc:
        raise ArchiveError(f"{path.name}: unreadable zip: {exc}") from exc
    with zf:
        members = zf.infolist()
        total = 0
        for info in members:
            _checked_member_path(info.filename, dest)
            mode = info.external_attr >> 16
            file_type = stat.S_IFMT(mode)  # 0 when the zip was written without Unix modes
            if file_type and stat.S_ISLNK(mode):
                # zipfile would write the link as a plain file holding the target;
                # still refuse one meant to point outside, it says what the author wanted
                link_target = zf.read(info).decode("utf-8", "replace")
                _check_link_target(info.filename, link_target, relative_to_member=True, dest=dest)
            elif file_type and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise ArchiveError(f"archive member {info.filename!r}: special file refused")
            total += info.file_size
            if total > max_bytes:
                raise ArchiveError(f"{path.name}: extracts to more than {max_bytes} bytes")
        for info in members:
            target = _checked_member_path(info.filename, dest)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    # the header's size can lie; count what really comes out
                    while chunk := src.read(1024 * 1024):
                        written += len(chunk)
                        if written > info.file_size:
                            raise ArchiveError(
                                f"{path.name}: archive member {info.filename!r}: larger than its header says"
                            )
                        out.write(chunk)
            except _CORRUPT as exc:  # RuntimeError: encrypted; NotImplementedError: unknown compression
                raise ArchiveError(f"{path.name}: archive member {info.filename!r} is corrupt: {exc}") from exc


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r:*")
    except (*_CORRUPT, OSError) as exc:
        raise ArchiveError(f"{path.name}: unreadable tar archive: {exc}") from exc


def _extract_tar(path: Path, dest: Path, max_bytes: int) -> None:
    with _open_tar(path) as tf:
        try:
            members = tf.getmembers()
        except (*_CORRUPT, OSError) as exc:
            raise ArchiveError(f"{path.name}: unreadable tar archive: {exc}") from exc
        total = 0
        for member in members:
            _checked_member_path(member.name, dest)
            if member.issym():
                _check_link_target(member.name, member.linkname, relative_to_member=True, dest=dest)
            elif member.islnk():
                _check_link_target(member.name, member.linkname, relative_to_member=False, dest=dest)
            elif not (member.isreg() or member.isdir()):
                raise ArchiveError(f"archive member {member.name!r}: device or special file refused")
            total += member.size
            if total > max_bytes:
                raise ArchiveError(f"{path.name}: extracts to more than {max_bytes} bytes")
        try:
            # the stdlib 'data' filter re-checks all of the above at write time
            tf.extractall(dest, members=members, filter="data")
        except (*_CORRUPT, OSError) as exc:
            raise ArchiveError(f"{path.name}: extraction refused: {exc}") from exc


def extract_archive(path: Path, dest: Path, *, max_bytes: int) -> str:
    """Extract `path` into the (empty) folder `dest`; returns the archive kind."""
    dest = dest.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    kind = archive_kind(path)
    try:
        if kind == "zip":
            _extract_zip(path, dest, max_bytes)
        else:
            _extract_tar(path, dest, max_bytes)
    except _CORRUPT as exc:  # anything a reader raised that the steps above did not name
        raise ArchiveError(f"{path.name}: corrupt {kind} archive: {exc}") from exc
    return kind
