"""Message states have one definition: the enum's values are the wire/database spellings, and
no Python module compares a state with a string literal any more."""

import re
from pathlib import Path

from mail_proxy.states import MessageState

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ["core/mail_proxy", "api/mail_proxy_api", "sender/mail_proxy_sender", "cli", "operator"]
LITERAL_COMPARE = re.compile(r"(state|status)\s*[!=]=\s*\"(pending|deferred|sending|sent|error)\"")


def test_values_are_the_reference_spellings() -> None:
    assert [s.value for s in MessageState] == ["pending", "deferred", "sending", "sent", "error"]
    assert MessageState.SENT == "sent"
    assert f"{MessageState.ERROR}" == "error"


def test_no_module_compares_a_state_with_a_literal() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if LITERAL_COMPARE.search(line)
    ]
    assert found == [], "compare with mail_proxy.states.MessageState"
