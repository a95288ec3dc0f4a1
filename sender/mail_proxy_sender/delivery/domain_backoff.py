# SPDX-License-Identifier: Apache-2.0
"""Back off one destination domain of one account when its servers throttle (issue 10 item 4).

A relay that answers RCPT for some recipient with a 4xx naming a rate limit (`451 4.7.1 ...
rate limit`, `421 4.7.0 ... too many`, see `failures.names_rate_limit`) speaks for that
recipient's domain only: further recipients of the domain, in this message and in the next ones
of the same account, are deferred without being named until the back-off ends. The account keeps
sending to every other domain (unlike `Throttled` at connect/MAIL/DATA, which backs the whole
account off).

The back-off doubles while the domain keeps throttling, from `base_seconds` up to `max_seconds`
(the account throttle settings `GMP_THROTTLE_BASE_SECONDS` / `GMP_THROTTLE_MAX_SECONDS`), and
resets after a recipient of the domain is accepted. Every sender process honours it: each
change this process learns from a server is handed to `publish` (a JSON `payload()`: the
`domain_backoff_channel` sends it with Postgres NOTIFY), and what other senders learned comes
back through `apply()` (the later end and the higher level win; "accepted" clears it). A sender
that starts later learns a domain's throttle from its own first throttled answer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Most (account, domain) pairs remembered; past it, the expired ones are dropped first.
_MAX_ENTRIES = 10_000


def domain_of(address: str) -> str:
    """The domain part of a normalised envelope address, lowercased."""
    return address.rpartition("@")[2].lower()


@dataclass
class _Entry:
    until: float
    level: int


def payload(account_pk: int, domain: str, until: float | None, level: int = 0) -> str:
    """The NOTIFY payload of one change: a throttle until `until` (epoch s), or, with `until`
    None, the domain accepting again."""
    return json.dumps({"account_pk": account_pk, "domain": domain, "until": until, "level": level})


class DomainBackoff:
    def __init__(
        self,
        *,
        base_seconds: float,
        max_seconds: float,
        publish: Callable[[str], None] | None = None,
    ) -> None:
        self._base = base_seconds
        self._max = max_seconds
        self._entries: dict[tuple[int, str], _Entry] = {}
        self._publish = publish

    def until(self, account_pk: int, domain: str, now: float) -> float | None:
        """When the domain may be tried again (epoch s), or None when it may be now."""
        entry = self._entries.get((account_pk, domain))
        if entry is None or entry.until <= now:
            return None
        return entry.until

    def throttled(self, account_pk: int, addresses: Iterable[str], now: float) -> dict[str, float]:
        """The addresses whose domain is backed off now, with the time it ends."""
        out = {}
        for address in addresses:
            until = self.until(account_pk, domain_of(address), now)
            if until is not None:
                out[address] = until
        return out

    def throttle(self, account_pk: int, domain: str, now: float) -> float:
        """The domain's servers asked us to slow down: back it off; returns when it ends."""
        key = (account_pk, domain)
        entry = self._entries.get(key)
        level = entry.level + 1 if entry is not None else 0
        until: float = now + min(self._max, self._base * float(2 ** min(level, 30)))
        if entry is None and len(self._entries) >= _MAX_ENTRIES:
            self._forget_expired(now)
        self._entries[key] = _Entry(until, level)
        if self._publish is not None:
            self._publish(payload(account_pk, domain, until, level))
        return until

    def accepted(self, account_pk: int, domain: str) -> None:
        """A recipient of the domain was accepted: it is not throttling any more."""
        if self._entries.pop((account_pk, domain), None) is not None and self._publish:
            self._publish(payload(account_pk, domain, None))

    def apply(self, text: str, now: float) -> bool:
        """Apply a change another sender published (`payload()`); False when `text` is not
        one (ignored: anybody may NOTIFY). A throttle never ends later than `max_seconds`
        from now, whatever it says."""
        try:
            change: Any = json.loads(text)
            account_pk, domain = int(change["account_pk"]), str(change["domain"]).lower()
            until = None if change["until"] is None else float(change["until"])
            level = min(max(int(change.get("level") or 0), 0), 30)
        except (ValueError, TypeError, KeyError, AttributeError):
            return False
        if not domain or len(domain) > 255:
            return False
        key = (account_pk, domain)
        if until is None:
            self._entries.pop(key, None)
            return True
        if not math.isfinite(until) or until <= now:
            return True
        until = min(until, now + self._max)
        entry = self._entries.get(key)
        if entry is None and len(self._entries) >= _MAX_ENTRIES:
            self._forget_expired(now)
        if entry is None or entry.until < until or entry.level < level:
            self._entries[key] = _Entry(
                max(until, entry.until if entry else 0.0), max(level, entry.level if entry else 0)
            )
        return True

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, e in self._entries.items() if e.until <= now]:
            del self._entries[key]
        while len(self._entries) >= _MAX_ENTRIES:
            self._entries.pop(next(iter(self._entries)))
