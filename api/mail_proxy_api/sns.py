# SPDX-License-Identifier: BUSL-1.1
"""The two calls SNS verification needs: the signing certificate (cached), and the
SubscribeURL that confirms a subscription. Both URLs must be https on a host matching
`GMP_SNS_CERTIFICATE_HOST_PATTERN` (SNS hosts by default), checked before any request, so a
forged message cannot make the API call anywhere else; redirects are not followed.

A flood of forged notifications must not turn into a flood of fetches, so certificate fetches
are bounded (per API process):
- each URL is fetched once and its PEM kept for `ttl_seconds` (24 h; SNS rotates certificates
  under a new URL), at most `max_cached` URLs, least recently used evicted first;
- concurrent requests naming one URL share a single fetch;
- a URL whose fetch failed is not fetched again for `failure_ttl_seconds` (5 min);
- at most `fetches_per_minute` fetches in any 60 s (`GMP_SNS_CERTIFICATE_FETCHES_PER_MINUTE`);
  beyond it, and while a URL is in its failure pause, `VerificationBusy` (HTTP 503 with
  Retry-After: SNS retries the delivery later; a cached certificate still verifies at once).
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable

import httpx

from mail_proxy.feedback.events import FeedbackError, SignatureInvalid, VerificationBusy
from mail_proxy.feedback.ses import sns_url_allowed

_MAX_CERTIFICATE_BYTES = 64 * 1024
_TIMEOUT_SECONDS = 10.0
_WINDOW_SECONDS = 60.0


class SnsCalls:
    """Fetches with `http` (a default client when None); see the module docstring for bounds.
    `clock` is monotonic seconds."""

    def __init__(
        self,
        http: httpx.AsyncClient | None = None,
        *,
        max_cached: int = 32,
        ttl_seconds: float = 86_400.0,
        failure_ttl_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._max_cached = max_cached
        self._ttl = ttl_seconds
        self._failure_ttl = failure_ttl_seconds
        self._clock = clock
        # url -> (expires_at, pem), in least-recently-used order.
        self._certificates: collections.OrderedDict[str, tuple[float, bytes]] = (
            collections.OrderedDict()
        )
        self._failed: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._in_flight: dict[str, asyncio.Future[bytes]] = {}
        self._fetched_at: collections.deque[float] = collections.deque()
        self.fetches = 0  # certificate requests made, for tests and debugging

    async def _get(self, url: str) -> httpx.Response:
        if self._http is not None:
            return await self._http.get(url, timeout=_TIMEOUT_SECONDS)
        async with httpx.AsyncClient(follow_redirects=False) as http:
            return await http.get(url, timeout=_TIMEOUT_SECONDS)

    def _cached(self, url: str, now: float) -> bytes | None:
        entry = self._certificates.get(url)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._certificates[url]
            return None
        self._certificates.move_to_end(url)
        return entry[1]

    def _take_budget(self, now: float, per_minute: int) -> None:
        while self._fetched_at and self._fetched_at[0] <= now - _WINDOW_SECONDS:
            self._fetched_at.popleft()
        if len(self._fetched_at) >= per_minute:
            wait = self._fetched_at[0] + _WINDOW_SECONDS - now
            raise VerificationBusy(
                "too many SNS signing-certificate fetches; try again later",
                retry_after=max(1, math.ceil(wait)),
            )
        self._fetched_at.append(now)

    async def certificate(self, url: str, host_pattern: str, *, fetches_per_minute: int) -> bytes:
        """The PEM at a SigningCertURL. `SignatureInvalid` when the URL may not be read;
        `VerificationBusy` when it cannot be read now (failing host, fetch budget spent)."""
        if not sns_url_allowed(url, host_pattern):
            raise SignatureInvalid("SigningCertURL is not an SNS certificate URL")
        now = self._clock()
        cached = self._cached(url, now)
        if cached is not None:
            return cached
        pending = self._in_flight.get(url)
        if pending is not None:
            return await asyncio.shield(pending)
        failed_until = self._failed.get(url)
        if failed_until is not None:
            if failed_until > now:
                raise VerificationBusy(
                    "the SNS signing certificate could not be fetched; not retried yet",
                    retry_after=max(1, math.ceil(failed_until - now)),
                )
            del self._failed[url]
        self._take_budget(now, fetches_per_minute)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._in_flight[url] = future
        try:
            pem = await self._fetch(url)
            self._certificates[url] = (self._clock() + self._ttl, pem)
            while len(self._certificates) > self._max_cached:
                self._certificates.popitem(last=False)
            future.set_result(pem)
            return pem
        except VerificationBusy as exc:
            self._failed[url] = self._clock() + self._failure_ttl
            while len(self._failed) > 4 * self._max_cached:
                self._failed.popitem(last=False)
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            del self._in_flight[url]
            if not future.done():  # cancelled or crashed mid-fetch: waiters must not hang
                future.set_exception(
                    VerificationBusy("SNS certificate fetch interrupted", retry_after=1)
                )
                future.exception()

    async def _fetch(self, url: str) -> bytes:
        self.fetches += 1
        try:
            response = await self._get(url)
        except httpx.HTTPError as exc:
            raise VerificationBusy(
                "cannot fetch the SNS signing certificate", retry_after=math.ceil(self._failure_ttl)
            ) from exc
        if response.status_code != 200 or len(response.content) > _MAX_CERTIFICATE_BYTES:
            raise VerificationBusy(
                f"cannot fetch the SNS signing certificate (HTTP {response.status_code})",
                retry_after=math.ceil(self._failure_ttl),
            )
        return response.content

    async def confirm(self, url: object, host_pattern: str) -> None:
        """Visit a (verified) SubscriptionConfirmation's SubscribeURL."""
        if not isinstance(url, str) or not sns_url_allowed(url, host_pattern, certificate=False):
            raise SignatureInvalid("SubscribeURL is not an SNS URL")
        try:
            response = await self._get(url)
        except httpx.HTTPError as exc:
            raise FeedbackError("cannot confirm the SNS subscription") from exc
        if not response.is_success:
            raise FeedbackError(f"SNS refused the subscription (HTTP {response.status_code})")
