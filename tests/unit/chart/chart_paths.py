"""Paths of the chart and a loader for the repository's `scripts/*.py` (not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "mail-proxy"


def load_script(name: str) -> ModuleType:
    """Import `scripts/<name>.py` as a module, the way `python scripts/<name>.py` would run it."""
    module_name = f"_mail_proxy_script_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
