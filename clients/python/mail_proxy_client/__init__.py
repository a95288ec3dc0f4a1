# SPDX-License-Identifier: Apache-2.0
"""mail-proxy's Python client: queue mail over the REST API (`Client`, `AsyncClient`) and
receive delivery reports in any web framework (`ReportReceiver`)."""

from mail_proxy_client._client import AsyncClient, Client
from mail_proxy_client._exceptions import (
    APIError,
    AuthenticationError,
    MailProxyError,
    NotFoundError,
    ServiceUnavailable,
    TransportError,
    ValidationError,
)
from mail_proxy_client._models import (
    AddMessagesResult,
    Attachment,
    Message,
    RecipientOutcome,
    Rejection,
    ReportAnswer,
    ReportItem,
)
from mail_proxy_client._receiver import ReportReceiver

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AddMessagesResult",
    "AsyncClient",
    "Attachment",
    "AuthenticationError",
    "Client",
    "MailProxyError",
    "Message",
    "NotFoundError",
    "RecipientOutcome",
    "Rejection",
    "ReportAnswer",
    "ReportItem",
    "ReportReceiver",
    "ServiceUnavailable",
    "TransportError",
    "ValidationError",
    "__version__",
]
