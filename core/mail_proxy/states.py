# SPDX-License-Identifier: Apache-2.0
"""A message's lifecycle states (one definition; SPEC §5, the reference's `status` values).

pending -> sending (leased) -> sent | deferred (retry later) | error (final). The values are the
wire and database spellings: `MessageState.SENT == "sent"`, so SQL text keeps the literals while
Python code compares with the enum.
"""

from __future__ import annotations

from enum import StrEnum


class MessageState(StrEnum):
    PENDING = "pending"  # accepted, waiting for its time and a lane
    DEFERRED = "deferred"  # a temporary failure or a rate limit: retried at `deferred_ts`
    SENDING = "sending"  # leased by a sender process until the lease expires
    SENT = "sent"  # accepted by the SMTP server (final)
    ERROR = "error"  # refused or out of retries (final)
