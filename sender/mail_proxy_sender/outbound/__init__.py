# SPDX-License-Identifier: Apache-2.0
"""Outbound HTTP on a tenant's behalf: public addresses only, errors in the core tree.

Public surface (everything else here is private):

- `OutboundClient(policy, *, follow_redirects=False, max_redirects=5, timeout_seconds=30.0)`:
  `request(...) -> httpx.Response` (body read) and `stream(...)` (async context manager);
  raises only `mail_proxy.errors.OutboundError` subclasses (`OutboundTemporary`,
  `OutboundPermanent`, `DestinationRefused`); HTTP statuses are left to the caller.
- `OutboundPolicy` (from `mail_proxy.outbound`): build it with `settings.outbound_policy`.
- `Resolver`: `(host, port) -> [ip, ...]`, to give tests a resolver of their own.
"""

from mail_proxy.outbound import OutboundPolicy
from mail_proxy_sender.outbound.client import OutboundClient
from mail_proxy_sender.outbound.destinations import Resolver

__all__ = ["OutboundClient", "OutboundPolicy", "Resolver"]
