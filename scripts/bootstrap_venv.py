# SPDX-License-Identifier: Apache-2.0
"""Create the project's virtual environment with pip in it, on any supported Python.

`make install` runs this with the system Python (standard library only). The usual
`python3 -m venv` fails on Debian and Ubuntu when `python3-venv` is missing (Python's own
`ensurepip` is split out of the system package), and leaves behind a half-made folder. In that
case, in this order:

1. as root with apt-get: install `python3-venv` (and the versioned `python3.X-venv`), retry;
2. otherwise: `python3 -m venv --without-pip`, then install pip from a pip wheel: the one Debian
   ships in /usr/share/python-wheels, else the newest from PyPI (pip's index URL is honoured);
3. when all of that fails: a message saying what to install, exit status 1.

    python3 scripts/bootstrap_venv.py .venv [--no-ensurepip] [--no-apt] [--no-local-wheel]

The `--no-*` flags skip steps (tests use them to walk the fallback path).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

DEFAULT_INDEX = "https://pypi.org/simple"
LOCAL_WHEELS = Path("/usr/share/python-wheels")


def say(text: str) -> None:
    sys.stderr.write(f"bootstrap_venv: {text}\n")


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def has_pip(venv: Path) -> bool:
    python = venv_python(venv)
    if not python.exists():
        return False
    probe = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, check=False)
    return probe.returncode == 0


def remove_venv(venv: Path) -> None:
    """Remove a half-made environment; never a folder that is not one (e.g. `VENV=.` by mistake)."""
    if not venv.exists():
        return
    if not (venv / "pyvenv.cfg").exists() and any(venv.iterdir()):
        raise SystemExit(f"bootstrap_venv: {venv} exists and is not a virtual environment")
    shutil.rmtree(venv, ignore_errors=True)


def try_venv(venv: Path, *, with_pip: bool) -> bool:
    args = [sys.executable, "-m", "venv", str(venv)]
    if not with_pip:
        args.append("--without-pip")
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode == 0 and (not with_pip or has_pip(venv)):
        return True
    # A failed `venv` leaves a python without pip: it would look installed to make next time.
    remove_venv(venv)
    if result.stderr.strip():
        say(result.stderr.strip().splitlines()[-1])
    return False


def apt_install_venv() -> bool:
    """Install Debian's venv packages when we may (root, apt-get present)."""
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    version = f"python{sys.version_info.major}.{sys.version_info.minor}-venv"
    say(f"installing python3-venv and {version} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    for packages in (["python3-venv", version], ["python3-venv"]):
        done = subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=False, env=env)
        if done.returncode == 0:
            return True
    return False


def _index_url() -> str:
    return os.environ.get("PIP_INDEX_URL", DEFAULT_INDEX).rstrip("/")


def _version_key(filename: str) -> tuple[int, ...]:
    """`pip-24.0.1-py3-none-any.whl` -> (24, 0, 1); pre-releases sort first (never chosen
    over a release of the same number)."""
    version = filename.split("-")[1]
    parts = re.findall(r"\d+|[a-z]+", version)
    if any(not p.isdigit() for p in parts):
        return (-1,)
    return tuple(int(p) for p in parts)


def download_pip_wheel(folder: Path) -> Path | None:
    """The newest pip wheel from the package index (PEP 691 JSON simple API)."""
    url = f"{_index_url()}/pip/"
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            files = json.load(response)["files"]
        wheels = [
            f for f in files if f["filename"].endswith("-py3-none-any.whl") and not f.get("yanked")
        ]
        chosen = max(wheels, key=lambda f: _version_key(f["filename"]))
        target = folder / chosen["filename"]
        with urllib.request.urlopen(chosen["url"], timeout=120) as response:
            target.write_bytes(response.read())
    except (OSError, ValueError, KeyError, IndexError) as exc:
        say(f"could not download pip from {url}: {exc}")
        return None
    return target


def local_pip_wheel() -> Path | None:
    found = sorted(LOCAL_WHEELS.glob("pip-*.whl")) if LOCAL_WHEELS.is_dir() else []
    return found[-1] if found else None


def install_pip_from_wheel(venv: Path, wheel: Path) -> bool:
    """A pip wheel runs as a zip application: it can install itself (`python pip.whl/pip`)."""
    python = venv_python(venv)
    done = subprocess.run(
        [python, str(wheel / "pip"), "install", "--quiet", "--no-index", str(wheel)],
        check=False,
    )
    return done.returncode == 0 and has_pip(venv)


def upgrade_pip(venv: Path) -> None:
    """A new venv's pip may predate what the project's build needs (PEP 660 editables)."""
    subprocess.run(
        [venv_python(venv), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=False
    )


def bootstrap(venv: Path, *, use_ensurepip: bool, use_apt: bool, use_local: bool = True) -> bool:
    """True once `venv` has a Python with a working pip (nothing is done when it already has)."""
    if has_pip(venv):
        return True
    remove_venv(venv)
    if _create(venv, use_ensurepip=use_ensurepip, use_apt=use_apt, use_local=use_local):
        upgrade_pip(venv)
        return True
    return False


def _create(venv: Path, *, use_ensurepip: bool, use_apt: bool, use_local: bool) -> bool:
    if use_ensurepip:
        if try_venv(venv, with_pip=True):
            return True
        if use_apt and apt_install_venv() and try_venv(venv, with_pip=True):
            return True
    say("creating the environment without pip, then installing pip from a wheel")
    if not try_venv(venv, with_pip=False):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        local = local_pip_wheel() if use_local else None
        if local is not None and install_pip_from_wheel(venv, local):
            return True
        downloaded = download_pip_wheel(Path(tmp))
        if downloaded is not None and install_pip_from_wheel(venv, downloaded):
            return True
    remove_venv(venv)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("venv", type=Path)
    parser.add_argument("--no-ensurepip", action="store_true", help="skip `python -m venv`")
    parser.add_argument("--no-apt", action="store_true", help="never call apt-get")
    parser.add_argument(
        "--no-local-wheel", action="store_true", help=f"ignore pip wheels in {LOCAL_WHEELS}"
    )
    args = parser.parse_args()
    done = bootstrap(
        args.venv,
        use_ensurepip=not args.no_ensurepip,
        use_apt=not args.no_apt,
        use_local=not args.no_local_wheel,
    )
    if done:
        return 0
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    say(
        f"could not create a virtual environment with pip in {args.venv}.\n"
        f"  On Debian/Ubuntu: sudo apt-get install python3-venv python{version}-venv\n"
        f"  Elsewhere: install pip for {sys.executable}, or run `make BASE_PYTHON=/path/to/python3`"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
