"""The registry entry of a `serve --data-dir` outside the home (issue 14), and the up-front
check of a folder the CLI must write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mail_proxy_cli.instances import InstanceError, register_external, require_writable


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    monkeypatch.setenv("GMP_HOME", str(folder))
    return folder


def test_a_folder_elsewhere_is_linked_once_under_its_name(home: Path, tmp_path: Path) -> None:
    data = tmp_path / "projects" / "shop"
    data.mkdir(parents=True)
    assert register_external(data) == "shop"
    assert register_external(data) == "shop"  # again: the same entry
    assert (home / "shop").resolve() == data.resolve()
    assert register_external(home / "shop") is None  # already in the home


def test_a_taken_or_reserved_name_gets_a_hash_suffix(home: Path, tmp_path: Path) -> None:
    (home / "shop").mkdir(parents=True)  # an instance of the home's own
    other = tmp_path / "b" / "shop"
    other.mkdir(parents=True)
    name = register_external(other)
    assert name is not None
    assert name.startswith("shop-")
    assert (home / name).resolve() == other.resolve()
    listed = tmp_path / "c" / "list"
    listed.mkdir(parents=True)
    reserved = register_external(listed, frozenset({"list", "start"}))
    assert reserved is not None
    assert reserved.startswith("list-")


def test_a_link_to_a_deleted_folder_frees_its_name(home: Path, tmp_path: Path) -> None:
    gone = tmp_path / "old" / "shop"
    gone.mkdir(parents=True)
    register_external(gone)
    gone.rmdir()
    fresh = tmp_path / "new" / "shop"
    fresh.mkdir(parents=True)
    assert register_external(fresh) == "shop"
    assert (home / "shop").resolve() == fresh.resolve()


def test_require_writable_names_the_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InstanceError, match=f"cannot write the instance folder {blocker}/x"):
        require_writable(blocker / "x")
    require_writable(tmp_path / "new" / "folder")  # made when missing, no probe left behind
    assert os.listdir(tmp_path / "new" / "folder") == []
