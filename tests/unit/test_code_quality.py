"""The tree's own rules, checked by the test suite: lint, format, strict types, import contracts."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_lint() -> None:
    result = _run(sys.executable, "-m", "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = _run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts() -> None:
    beside_python = Path(sys.executable).with_name("lint-imports")
    lint_imports = str(beside_python) if beside_python.exists() else shutil.which("lint-imports")
    if lint_imports is None:
        pytest.fail("lint-imports is not installed: run `make install`")
    result = _run(lint_imports)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_directly_in_a_top_level_folder() -> None:
    # operator/ as a package would shadow the standard library's `operator`.
    for folder in ("core", "api", "sender", "operator", "cli"):
        assert not list((ROOT / folder).glob("*.py")), folder


# The BSL-licensed parts (README "Licences"): multi-tenant management beyond the default tenant.
BSL_FILES = {
    "api/mail_proxy_api/routes/tenants.py",
    "api/mail_proxy_api/schemas/tenants.py",
    "operator/mail_proxy_operator/api_keys.py",
    # Bounces, PEC receipts and suppression lists
    "api/mail_proxy_api/routes/suppressions.py",
    "api/mail_proxy_api/schemas/bounce.py",
    "cli/mail_proxy_cli/suppression_verbs.py",
    "api/mail_proxy_api/schemas/suppressions.py",
    "core/mail_proxy/db/bounce_routing.py",
    "core/mail_proxy/db/bounces.py",
    "core/mail_proxy/db/bounced_recipients.py",
    "core/mail_proxy/db/correlate.py",
    "core/mail_proxy/db/mailboxes.py",
    "core/mail_proxy/db/pec.py",
    "core/mail_proxy/db/suppressions.py",
    # large-file offload
    "core/mail_proxy/db/large_files.py",
    "sender/mail_proxy_sender/attachments/offload.py",
    "sender/mail_proxy_sender/maintenance/large_file_cleanup.py",
    "api/mail_proxy_api/routes/downloads.py",
    # Provider feedback (bounces and complaints from SES, SendGrid, Mailgun, Postmark)
    "api/mail_proxy_api/routes/providers.py",
    "api/mail_proxy_api/schemas/providers.py",
    "api/mail_proxy_api/sns.py",
    "core/mail_proxy/db/provider_feedback.py",
}
# Folders whose every module is BUSL-1.1 (bounce and PEC; large-file offload).
BSL_FOLDERS = (
    "core/mail_proxy/inbound/",
    "sender/mail_proxy_sender/inbound/",
    "core/mail_proxy/large_files/",
    "core/mail_proxy/feedback/",
)


def test_every_module_names_its_licence() -> None:
    for folder in ("core", "api", "sender", "operator", "cli"):
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            bsl = relative in BSL_FILES or relative.startswith(BSL_FOLDERS)
            licence = "BUSL-1.1" if bsl else "Apache-2.0"
            first = path.read_text(encoding="utf-8").splitlines()[0]
            assert first == f"# SPDX-License-Identifier: {licence}", relative
