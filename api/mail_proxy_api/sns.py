# SPDX-License-Identifier: BUSL-1.1
"""The two calls SNS verification needs: the signing certificate (cached), and the
SubscribeURL that confirms a subscription. Both URLs must be https on a host matching
`GMP_SNS_CERTIFICATE_HOST_PATTERN` (SNS hosts by default), checked before any request, so a
forged message cannot make the API call anywhere else; redirects are not followed.
"""

from __future__ import annotations

import httpx

from mail_proxy.feedback.events import FeedbackError, SignatureInvalid
from mail_proxy.feedback.ses import sns_url_allowed

_MAX_CERTIFICATE_BYTES = 64 * 1024
_TIMEOUT_SECONDS = 10.0


class SnsCalls:
    """Fetches with `http` (a default client when None); keeps up to `max_cached` certificates."""

    def __init__(self, http: httpx.AsyncClient | None = None, *, max_cached: int = 32) -> None:
        self._http = http
        self._max_cached = max_cached
        self._certificates: dict[str, bytes] = {}

    async def _get(self, url: str) -> httpx.Response:
        if self._http is not None:
            return await self._http.get(url, timeout=_TIMEOUT_SECONDS)
        async with httpx.AsyncClient(follow_redirects=False) as http:
            return await http.get(url, timeout=_TIMEOUT_SECONDS)

    async def certificate(self, url: str, host_pattern: str) -> bytes:
        """The PEM at a SigningCertURL; `SignatureInvalid` when it may not or cannot be read."""
        if not sns_url_allowed(url, host_pattern):
            raise SignatureInvalid("SigningCertURL is not an SNS certificate URL")
        cached = self._certificates.get(url)
        if cached is not None:
            return cached
        try:
            response = await self._get(url)
        except httpx.HTTPError as exc:
            raise SignatureInvalid("cannot fetch the SNS signing certificate") from exc
        if response.status_code != 200 or len(response.content) > _MAX_CERTIFICATE_BYTES:
            raise SignatureInvalid("cannot fetch the SNS signing certificate")
        if len(self._certificates) >= self._max_cached:
            self._certificates.pop(next(iter(self._certificates)))
        self._certificates[url] = response.content
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
