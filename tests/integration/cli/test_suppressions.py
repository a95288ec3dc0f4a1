"""`NAME TENANT suppressions list|add|remove` against a running instance."""

from __future__ import annotations

import pytest

from tests.integration.cli.conftest import Lab

# The first test in a run also starts the session's instance.
pytestmark = pytest.mark.timeout(300)


def test_suppressions_add_list_remove(lab: Lab) -> None:
    lab.json("tenants", "add", "t-sup")
    added = lab.json("t-sup", "suppressions", "add", "Gone@Example.org", "--reason", "asked")
    assert added["added"] is True
    listed = lab.json("t-sup", "suppressions", "list")
    assert [(s["address"], s["reason"], s["source"]) for s in listed] == [
        ("gone@example.org", "asked", "manual")
    ]
    assert "gone@example.org" in lab.run("t-sup", "suppressions", "list").stdout

    bad = lab.run("t-sup", "suppressions", "add", "not-an-address", ok=False)
    assert bad.returncode == 1
    assert "HTTP 422" in bad.stderr

    lab.run("t-sup", "suppressions", "remove", "gone@example.org", "--force")
    assert lab.json("t-sup", "suppressions", "list") == []
    missing = lab.run("t-sup", "suppressions", "remove", "gone@example.org", "--force", ok=False)
    assert missing.returncode == 1
    assert "HTTP 404" in missing.stderr
