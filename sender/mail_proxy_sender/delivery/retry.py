# SPDX-License-Identifier: Apache-2.0
"""The retry policy: from a failed attempt to the outcome that is recorded.

A temporary failure is retried while the message has retries left (`max_retries`, so at most
1 + max_retries attempts), after `retry_delays_seconds[n]` (the last delay is reused beyond the
table) spread by +/- `retry_jitter_ratio` so a burst of failures does not come back as a burst.
Anything else ends the message in `error` with the reason.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mail_proxy.config import Settings
from mail_proxy.db.outcomes import Outcome
from mail_proxy.states import MessageState
from mail_proxy_sender.delivery.failures import DeliveryFailure, TemporaryFailure


@dataclass(frozen=True)
class RetryPolicy:
    delays_seconds: tuple[int, ...]
    max_retries: int
    jitter_ratio: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            delays_seconds=settings.retry_delays_seconds or (60,),
            max_retries=settings.max_retries,
            jitter_ratio=settings.retry_jitter_ratio,
        )

    def delay_seconds(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Delay before retry number `retry_number` (1 = the first retry), jitter included."""
        base = self.delays_seconds[min(retry_number, len(self.delays_seconds)) - 1]
        spread = base * self.jitter_ratio
        return max(0.0, base + (rng or random).uniform(-spread, spread))

    def outcome(
        self, *, message_pk: int, attempts: int, failure: DeliveryFailure, now: float
    ) -> Outcome:
        """What to record after attempt number `attempts` (1-based) failed with `failure`."""
        meta: dict[str, object] = {"retry_count": attempts - 1}
        if failure.smtp_code is not None:
            meta["smtp_code"] = failure.smtp_code
        if isinstance(failure, TemporaryFailure) and attempts <= self.max_retries:
            until = int(now + self.delay_seconds(attempts))
            meta.update(deferred_ts=until, retry_count=attempts)
            return Outcome(
                message_pk,
                MessageState.DEFERRED,
                int(now),
                deferred_ts=until,
                error=failure.described,
                metadata=meta,
            )
        reason = failure.described
        if isinstance(failure, TemporaryFailure):
            reason = f"Max retries ({self.max_retries}) exceeded: {reason}"
        return Outcome(message_pk, MessageState.ERROR, int(now), error=reason, metadata=meta)
