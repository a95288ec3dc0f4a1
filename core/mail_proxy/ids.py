# SPDX-License-Identifier: Apache-2.0
"""The id rules, defined once: tenant, account and message ids.

API bodies, the CLI, the operator's CR specs and the CRD YAML (`crds/`, checked by a test) all
take these, so an id accepted in one place is accepted everywhere and can always be used again
(in a URL path, a metric label, a header, a report item, a btree key).

- tenant id: letters, digits, `_` and `-`, 1 to 64 characters (reference section 1.4 tenants,
  made strict: it names API keys, Secrets and URL paths);
- account id: 1 to 128 characters, no whitespace, no control character, no `/` (it is a URL
  path segment in `/account/{id}`);
- message id: 1 to 255 characters, no control character (it is sent in `X-Genro-Mail-ID`;
  RFC 5322 section 2.1.1 keeps a header line under 998 characters). A bad message id is a
  per-message rejection (`invalid id`), never a 422 for the whole batch (reference section 1.4).
"""

from __future__ import annotations

import re

TENANT_ID_MAX_LENGTH = 64
TENANT_ID_PATTERN = rf"^[A-Za-z0-9_-]{{1,{TENANT_ID_MAX_LENGTH}}}$"

ACCOUNT_ID_MAX_LENGTH = 128
ACCOUNT_ID_PATTERN = rf"^[^\x00-\x20\x7f/]{{1,{ACCOUNT_ID_MAX_LENGTH}}}$"

MESSAGE_ID_MAX_LENGTH = 255
MESSAGE_ID_PATTERN = rf"^[^\x00-\x1f\x7f]{{1,{MESSAGE_ID_MAX_LENGTH}}}$"

_TENANT_ID = re.compile(TENANT_ID_PATTERN)
_ACCOUNT_ID = re.compile(ACCOUNT_ID_PATTERN)
_MESSAGE_ID = re.compile(MESSAGE_ID_PATTERN)


def valid_tenant_id(value: object) -> bool:
    """True for a string that follows `TENANT_ID_PATTERN`."""
    return isinstance(value, str) and _TENANT_ID.fullmatch(value) is not None


def valid_account_id(value: object) -> bool:
    """True for a string that follows `ACCOUNT_ID_PATTERN`."""
    return isinstance(value, str) and _ACCOUNT_ID.fullmatch(value) is not None


def valid_message_id(value: object) -> bool:
    """True for a string that follows `MESSAGE_ID_PATTERN`."""
    return isinstance(value, str) and _MESSAGE_ID.fullmatch(value) is not None
