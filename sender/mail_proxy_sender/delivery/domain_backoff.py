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
resets after a recipient of the domain is accepted. It is kept per sender process (in memory):
another sender learns it from its own first throttled answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Most (account, domain) pairs remembered; past it, the expired ones are dropped first.
_MAX_ENTRIES = 10_000


def domain_of(address: str) -> str:
    """The domain part of a normalised envelope address, lowercased."""
    return address.rpartition("@")[2].lower()


@dataclass
class _Entry:
    until: float
    level: int


class DomainBackoff:
    def __init__(self, *, base_seconds: float, max_seconds: float) -> None:
        self._base = base_seconds
        self._max = max_seconds
        self._entries: dict[tuple[int, str], _Entry] = {}

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
        return until

    def accepted(self, account_pk: int, domain: str) -> None:
        """A recipient of the domain was accepted: it is not throttling any more."""
        self._entries.pop((account_pk, domain), None)

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, e in self._entries.items() if e.until <= now]:
            del self._entries[key]
        while len(self._entries) >= _MAX_ENTRIES:
            self._entries.pop(next(iter(self._entries)))
