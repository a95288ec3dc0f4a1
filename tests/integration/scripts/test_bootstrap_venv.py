"""`make install`'s first step: a project venv with pip, even where `python3 -m venv` cannot make
one (Debian without python3-venv). The fallback path runs for real: venv without pip, then pip
from the package index."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "bootstrap_venv.py"


def _bootstrap(venv: Path, *flags: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(venv), *flags],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def _pip_works(venv: Path) -> bool:
    python = venv / "bin" / "python"
    probe = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_half_made_venv_is_repaired_with_pip_from_the_index(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # What a failed `python3 -m venv` leaves on Debian: a python, no pip.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    assert not _pip_works(venv)

    log = _bootstrap(venv, "--no-ensurepip", "--no-apt", "--no-local-wheel")

    assert "installing pip from a wheel" in log
    assert _pip_works(venv)
    # A second run finds it ready and changes nothing.
    marker = venv / "marker"
    marker.write_text("kept")
    assert _bootstrap(venv) == ""
    assert marker.exists()


def test_no_way_to_pip_ends_with_a_message_naming_the_package(tmp_path: Path) -> None:
    env = dict(os.environ, PIP_INDEX_URL="http://127.0.0.1:9/simple")
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            str(tmp_path / "venv"),
            "--no-ensurepip",
            "--no-apt",
            "--no-local-wheel",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 1
    assert "apt-get install python3-venv" in done.stderr
    assert not (tmp_path / "venv").exists()  # nothing half-made left for make to trust


def test_a_folder_that_is_not_a_venv_is_never_removed(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("data")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), "--no-ensurepip", "--no-apt"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "not a virtual environment" in done.stderr
    assert (tmp_path / "precious.txt").read_text() == "data"


def test_make_install_bootstraps_the_venv_before_installing_into_it(tmp_path: Path) -> None:
    venv = tmp_path / "v"
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "install", f"VENV={venv}"],
        cwd=ROOT,
        # Run under `make test`, the outer make's variables would make this a sub-make.
        env={k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}},
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert "scripts/bootstrap_venv.py" in lines[0]
    assert str(venv) in lines[0]
    assert any(f"{venv}/bin/python -m pip install" in line for line in lines[1:])
