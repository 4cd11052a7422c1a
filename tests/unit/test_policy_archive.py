"""Safe extraction of policy archives: what must be refused, and that good archives land whole."""

import io
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

from aggregator.policies.archive import ArchiveError, extract_archive
from aggregator.policies.errors import PolicyLoadError
from aggregator.policies.fetch import FetchError, fetch_package
from tests.support.policy_packages import policy_source, write_package, write_tar

GOOD = policy_source("""
def __init__(self, rule_id, settings, parameters): pass
def eval(self, parameters, input_data, context): return {}
""")


def _tar_with(path, *members):
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "tar.xz", "dir"])
def test_good_packages_of_every_kind_are_found(tmp_path, kind):
    package = write_package(kind, tmp_path / "src", GOOD, {"code/helper.py": "X = 1\n"})
    fetched = fetch_package(str(package), cache_dir=tmp_path / "cache")
    assert (fetched.code_dir / "function.py").read_text() == GOOD
    assert (fetched.code_dir / "helper.py").read_text() == "X = 1\n"
    if kind != "dir":
        assert fetched.code_dir.is_relative_to(tmp_path / "cache")


def test_zip_slip_is_refused_and_nothing_escapes(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("code/function.py", GOOD)
        zf.writestr("../../escaped.txt", "pwned")
    with pytest.raises(ArchiveError, match=r"'\.\./\.\./escaped\.txt'.*'\.\.'"):
        extract_archive(archive, tmp_path / "out" / "pkg", max_bytes=10**6)
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out" / "pkg" / "code" / "function.py").exists()  # checked before writing


def test_zip_absolute_member_is_refused(tmp_path):
    archive = tmp_path / "abs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("code/function.py")
        zf.writestr(info, GOOD)
        zf.writestr(zipfile.ZipInfo("/tmp/abs-escape.txt"), "x")
    with zipfile.ZipFile(archive) as zf:
        assert "/tmp/abs-escape.txt" in zf.namelist()  # written as is
    with pytest.raises(ArchiveError, match="absolute path"):
        extract_archive(archive, tmp_path / "out", max_bytes=10**6)


def test_tar_absolute_and_dotdot_members_are_refused(tmp_path):
    for name, expected in (("/etc/evil", "absolute path"), ("code/../../evil", r"'\.\.'")):
        archive = _tar_with(tmp_path / "t.tar.gz", _file("code/function.py", GOOD.encode()), _file(name))
        with pytest.raises(ArchiveError, match=expected):
            extract_archive(archive, tmp_path / "out", max_bytes=10**6)


def test_tar_symlink_escaping_is_refused(tmp_path):
    archive = _tar_with(
        tmp_path / "link.tar.gz",
        _file("code/function.py", GOOD.encode()),
        _link("code/secrets", "../../../etc"),
    )
    with pytest.raises(ArchiveError, match=r"'code/secrets'.*points outside"):
        extract_archive(archive, tmp_path / "out", max_bytes=10**6)
    assert not (tmp_path / "out" / "code").exists()


def test_tar_symlink_to_absolute_path_is_refused(tmp_path):
    archive = _tar_with(tmp_path / "abs-link.tar.gz", _link("code/passwd", "/etc/passwd"))
    with pytest.raises(ArchiveError, match="link to absolute path"):
        extract_archive(archive, tmp_path / "out", max_bytes=10**6)


def test_write_through_an_escaping_symlink_is_refused(tmp_path):
    # classic two-step: a link to outside, then a file "inside" the link
    archive = _tar_with(
        tmp_path / "two-step.tar.gz",
        _link("code/out", ".."),
        _link("code/out2", "out/.."),
        _file("code/out2/pwned.txt"),
    )
    with pytest.raises(ArchiveError):
        extract_archive(archive, tmp_path / "out", max_bytes=10**6)
    assert not (tmp_path / "pwned.txt").exists()


def test_tar_hardlink_escaping_is_refused(tmp_path):
    archive = _tar_with(tmp_path / "hard.tar.gz", _link("code/shadow", "../../etc/shadow", tarfile.LNKTYPE))
    with pytest.raises(ArchiveError, match="code/shadow"):
        extract_archive(archive, tmp_path / "out", max_bytes=10**6)


def test_links_inside_the_folder_are_kept(tmp_path):
    archive = _tar_with(
        tmp_path / "ok.tar.gz",
        _file("code/function.py", GOOD.encode()),
        _link("code/alias.py", "function.py"),
    )
    extract_archive(archive, tmp_path / "out", max_bytes=10**6)
    assert (tmp_path / "out" / "code" / "alias.py").read_text() == GOOD


def test_device_member_is_refused(tmp_path):
    info = tarfile.TarInfo("code/null")
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    archive = _tar_with(tmp_path / "dev.tar.gz", (info, None))
    with pytest.raises(ArchiveError, match="device or special file"):
        extract_archive(archive, tmp_path / "out", max_bytes=10**6)


def test_zip_symlink_pointing_out_is_refused(tmp_path):
    archive = tmp_path / "zlink.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("code/escape")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "../../etc/passwd")
    with pytest.raises(ArchiveError, match="points outside"):
        extract_archive(archive, tmp_path / "out", max_bytes=10**6)


def test_extracted_size_is_capped(tmp_path):
    archive = write_tar(tmp_path / "big.tar.gz", GOOD, {"code/blob.txt": "0" * 200_000})
    with pytest.raises(ArchiveError, match="more than 100000 bytes"):
        extract_archive(archive, tmp_path / "out", max_bytes=100_000)


def test_not_an_archive_and_missing_code_folder(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"definitely not an archive")
    with pytest.raises(ArchiveError, match="not a zip, tar.gz or tar.xz"):
        fetch_package(str(junk), cache_dir=tmp_path / "cache")
    wrong_top = tmp_path / "wrong.zip"
    with zipfile.ZipFile(wrong_top, "w") as zf:
        zf.writestr("src/function.py", GOOD)
    with pytest.raises(PolicyLoadError, match=r"no code/function.py.*\['src'\]"):
        fetch_package(str(wrong_top), cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache" / "packages").glob("*/pkg"))  # a refused package is not cached
    with pytest.raises(FetchError, match="no such file"):
        fetch_package(str(tmp_path / "absent.tar.gz"), cache_dir=tmp_path / "cache")


def test_a_cache_folder_others_can_write_is_refused(tmp_path):
    package = write_package("zip", tmp_path / "src", GOOD)
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(FetchError, match="is not private"):
        fetch_package(str(package), cache_dir=shared)


# --- corrupt archives (issue 13, case 6): an ArchiveError naming the archive, never zlib/zipfile errors


def _zip_bytes(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, data)
    return buffer.getvalue()


def _understated(blob: bytes, name: str, real_size: int, claimed: int) -> bytes:
    """The zip with both headers of `name` claiming `claimed` bytes instead of `real_size`."""
    local = real_size.to_bytes(4, "little")
    fake = claimed.to_bytes(4, "little")
    head = blob.index(b"PK\x03\x04")
    central = blob.index(b"PK\x01\x02")
    patched = bytearray(blob)
    assert patched[head + 22:head + 26] == local and patched[central + 24:central + 28] == local
    patched[head + 22:head + 26] = fake  # local header: uncompressed size
    patched[central + 24:central + 28] = fake  # central directory: uncompressed size
    return bytes(patched)


def test_a_zip_whose_header_understates_a_size_is_refused_naming_it(tmp_path):
    data = b"def f():\n    return 1\n" * 200
    archive = tmp_path / "liar.zip"
    archive.write_bytes(_understated(_zip_bytes("code/function.py", data), "code/function.py", len(data), 10))
    with pytest.raises(ArchiveError, match=r"liar\.zip: archive member 'code/function\.py' is corrupt"):
        extract_archive(archive, tmp_path / "out", max_bytes=10_000_000)


def test_a_zip_with_corrupt_deflate_data_is_refused_naming_it(tmp_path):
    blob = bytearray(_zip_bytes("code/function.py", b"x = 1\n" * 500))
    start = blob.index(b"code/function.py") + len("code/function.py")
    blob[start + 2:start + 12] = b"\xff" * 10  # inside the compressed stream
    archive = tmp_path / "garbled.zip"
    archive.write_bytes(bytes(blob))
    with pytest.raises(ArchiveError, match=r"garbled\.zip"):
        extract_archive(archive, tmp_path / "out", max_bytes=10_000_000)


def test_a_truncated_tar_xz_is_refused_naming_it(tmp_path):
    good = write_package("tar.xz", tmp_path / "p", GOOD)
    cut = tmp_path / "cut.tar.xz"
    cut.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ArchiveError, match=r"cut\.tar\.xz"):
        extract_archive(cut, tmp_path / "out", max_bytes=10_000_000)


def test_fuzzed_archives_fail_only_with_archive_errors(tmp_path_factory):
    """Random byte flips in real archives of each kind: extraction succeeds or says ArchiveError."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base = tmp_path_factory.mktemp("fuzz")
    originals = {kind: write_package(kind, base / kind.replace(".", "_"), GOOD).read_bytes()
                 for kind in ("zip", "tar.gz", "tar.xz")}

    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(kind=st.sampled_from(sorted(originals)), data=st.data())
    def one(kind, data):
        blob = bytearray(originals[kind])
        flips = data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(0, 255)), min_size=1, max_size=8))
        for where, value in flips:
            blob[where] = value
        if data.draw(st.booleans()):
            blob = blob[: data.draw(st.integers(1, len(blob)))]
        work = Path(tempfile.mkdtemp(dir=base))
        archive = work / f"fuzzed.{kind}"
        archive.write_bytes(bytes(blob))
        try:
            extract_archive(archive, work / "out", max_bytes=1_000_000)
        except ArchiveError as exc:
            assert "fuzzed" in str(exc) or "archive member" in str(exc)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    one()
