"""The fsspec store on `file://`: safe names, chunked upload and ranged reads, deletion."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mail_proxy.large_files.store import FileStore, StorageError, safe_name


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "etc_passwd"),
        ("..", "file.bin"),
        ("a\\b:c*?.txt", "a_b_c_.txt"),
        ("line\r\nbreak.txt", "line_break.txt"),
        ("résumé.pdf", "résumé.pdf"),
    ],
)
def test_safe_names_are_one_segment(name: str, safe: str) -> None:
    assert safe_name(name) == safe


def test_long_names_keep_their_extension() -> None:
    name = safe_name("é" * 300 + ".pdf")
    assert len(name.encode()) <= 200
    assert name.endswith(".pdf")


async def test_upload_read_range_and_delete(tmp_path: Path) -> None:
    store = FileStore(f"file://{tmp_path}/files")
    path = store.object_path("f" * 32, "../x.bin")
    assert path == f"{tmp_path}/files/{'f' * 32}/x.bin"
    data = bytes(range(256)) * 5000
    await store.upload(io.BytesIO(data), path)
    assert Path(path).read_bytes() == data
    got = b"".join([chunk async for chunk in store.read(path, 10, 300_000)])
    assert got == data[10:300_001]
    await store.delete(path)
    assert not Path(path).parent.exists()
    await store.delete(path)  # already gone: fine


async def test_a_missing_backend_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match=r"no storage backend|unusable"):
        FileStore("nosuchscheme://bucket/x").object_path("a" * 32, "x")
