"""Recipients that ended sessions (suspects): each keeps how the session ended at it, and
earlier suspects take turns across attempts (mail_proxy_sender.delivery.recipient_tally)."""

from __future__ import annotations

from mail_proxy_sender.delivery.failures import SessionEnded
from mail_proxy_sender.delivery.recipient_tally import SUSPECT, RecipientTally

HANGS = ["h1@x.test", "h2@x.test", "h3@x.test", "h4@x.test"]


def _previous(reason: str = "4.3.0 bye (SMTP 421)") -> list[dict[str, object]]:
    return [
        {"address": a, "status": "deferred", "code": None, "reason": f"{SUSPECT}: {reason}"}
        for a in HANGS
    ]


def test_each_suspect_keeps_how_the_session_ended_at_it() -> None:
    tally = RecipientTally(["h1@x.test", "slow@x.test", "ok@x.test"], None)
    tally.suspect("h1@x.test", alone=False, why="4.3.0 bye (SMTP 421)")
    tally.suspect("slow@x.test", alone=True, why="Timeout: no answer")
    tally.defer(tally.to_send(), SessionEnded("Timeout: no answer"))
    assert tally.fates["h1@x.test"].reason == f"{SUSPECT}: 4.3.0 bye (SMTP 421)"
    assert tally.fates["slow@x.test"].reason == f"{SUSPECT}: Timeout: no answer"
    assert tally.fates["ok@x.test"].reason == "no answer for this recipient: Timeout: no answer"


def test_a_suspect_not_reached_in_this_attempt_keeps_its_earlier_reason() -> None:
    tally = RecipientTally(HANGS, _previous(), attempt=1)
    tally.defer(tally.to_send(), SessionEnded("Timeout: no answer"))
    assert {f.reason for f in tally.fates.values()} == {f"{SUSPECT}: 4.3.0 bye (SMTP 421)"}


def test_earlier_suspects_take_turns_first_across_attempts() -> None:
    firsts = [RecipientTally(HANGS, _previous(), attempt=n).next_names() for n in range(4)]
    assert sorted(name for [name] in firsts) == sorted(HANGS)
    # Others first, whatever the attempt.
    tally = RecipientTally([*HANGS, "grey@x.test"], _previous(), attempt=2)
    assert tally.next_names() == ["grey@x.test"]
