"""Bring a policy package to a local folder: from a URL, an archive path or a directory.

Downloads have a deadline and a size cap. Fetched archives are extracted once
into `<cache_dir>/packages/<key>/` (key: the URL, or the archive's path, size
and mtime, so an edited local archive is fetched again) and reused; a cache
entry appears whole or not at all (extracted beside it, then renamed).
A directory package is used in place, so edits show at the next load.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from aggregator.policies.archive import extract_archive
from aggregator.policies.errors import PolicyLoadError

__all__ = ["FetchError", "FetchedPackage", "download", "fetch_package", "is_package_location"]

_ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar.xz", ".txz")


class FetchError(PolicyLoadError):
    """The package could not be downloaded or found."""


@dataclass(frozen=True)
class FetchedPackage:
    code_dir: Path  # the folder holding function.py
    work_dir: Path  # our own folder for this package (requirements go under it)
    origin: str  # what it was fetched from, for messages


def is_package_location(source: str) -> bool:
    """A URL, an existing path, or something named like an archive (vs a policy rule URI)."""
    scheme = urllib.parse.urlsplit(source).scheme.lower()
    if scheme in ("http", "https", "file"):
        return True
    if source.lower().endswith(_ARCHIVE_SUFFIXES):
        return True
    return os.path.exists(source)


def _key(*parts: object) -> str:
    return hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()[:24]


def download(url: str, dest: Path, *, timeout_s: float, max_bytes: int) -> None:
    """GET `url` into `dest`, giving up after `timeout_s` in all or `max_bytes`."""
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url, headers={"User-Agent": "aios-aggregator-policy-fetch"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response, open(dest, "wb") as out:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise FetchError(f"{url}: package is {int(length)} bytes, over the {max_bytes}-byte limit")
            received = 0
            while chunk := response.read(256 * 1024):
                received += len(chunk)
                if received > max_bytes:
                    raise FetchError(f"{url}: package is over the {max_bytes}-byte limit")
                if time.monotonic() > deadline:
                    raise FetchError(f"{url}: download took longer than {timeout_s:g} s")
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise FetchError(f"{url}: no answer within {timeout_s:g} s") from exc
        raise FetchError(f"{url}: cannot download: {exc.reason}") from exc
    except TimeoutError as exc:
        raise FetchError(f"{url}: download stalled (limit {timeout_s:g} s)") from exc
    except OSError as exc:
        raise FetchError(f"{url}: download failed: {exc}") from exc


def _find_code_dir(root: Path, origin: str) -> Path:
    if (root / "code" / "function.py").is_file():
        return root / "code"
    if (root / "function.py").is_file():  # pointed straight at the code/ folder
        return root
    found = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    raise PolicyLoadError(
        f"{origin}: no code/function.py in the package (the top folder must be code/); found {found}"
    )


def _extract_into_cache(archive: Path, final: Path, origin: str, max_extracted_bytes: int) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=final.parent))
    try:
        extract_archive(archive, staging / "pkg", max_bytes=max_extracted_bytes)
        _find_code_dir(staging / "pkg", origin)
        try:
            os.replace(staging / "pkg", final)
        except OSError:
            if not final.exists():  # lost a race only if someone else made it
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _ensure_private_cache(cache_dir: Path) -> None:
    """Our cache only: a folder others can write to could be seeded with a hostile package."""
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = cache_dir.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise FetchError(
            f"policy cache {cache_dir} is not private (owner uid {st.st_uid}, mode {oct(st.st_mode & 0o777)}); "
            "set AIOS_POLICY_CACHE_DIR to a folder only the aggregator can write"
        )


def fetch_package(
    location: str,
    *,
    cache_dir: Path,
    timeout_s: float = 30.0,
    max_bytes: int = 100 * 1024 * 1024,
    max_extracted_bytes: int = 500 * 1024 * 1024,
) -> FetchedPackage:
    cache_dir = Path(cache_dir)
    _ensure_private_cache(cache_dir)
    split = urllib.parse.urlsplit(location)
    scheme = split.scheme.lower()
    if scheme in ("http", "https"):
        work = cache_dir / "packages" / _key("url", location)
        if not (work / "pkg").is_dir():
            work.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=work, prefix=".download-", delete=False) as tmp:
                tmp_path = Path(tmp.name)
            try:
                download(location, tmp_path, timeout_s=timeout_s, max_bytes=max_bytes)
                _extract_into_cache(tmp_path, work / "pkg", location, max_extracted_bytes)
            finally:
                tmp_path.unlink(missing_ok=True)
        return FetchedPackage(_find_code_dir(work / "pkg", location), work, location)

    path = Path(urllib.parse.unquote(split.path) if scheme == "file" else location).expanduser()
    if not path.exists():
        raise FetchError(f"{location}: no such file or directory")
    path = path.resolve()
    if path.is_dir():
        work = cache_dir / "dirs" / _key("dir", path)
        work.mkdir(parents=True, exist_ok=True)
        return FetchedPackage(_find_code_dir(path, location), work, location)
    st = path.stat()
    work = cache_dir / "packages" / _key("file", path, st.st_size, st.st_mtime_ns)
    if not (work / "pkg").is_dir():
        _extract_into_cache(path, work / "pkg", location, max_extracted_bytes)
    return FetchedPackage(_find_code_dir(work / "pkg", location), work, location)
