# SPDX-License-Identifier: Apache-2.0
"""The `Range` header of a GET, for one byte range (RFC 9110 section 14).

Only a single range is served: a server may ignore a `Range` it does not support (RFC 9110
section 14.2), so several ranges, another unit or a malformed value give the whole content.
A range that starts beyond the end is unsatisfiable (416).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SINGLE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class Unsatisfiable(Exception):
    """No byte of the requested range exists (answer 416 with `Content-Range: bytes */size`)."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range to serve, None for the whole content; raises `Unsatisfiable`."""
    if not header:
        return None
    match = _SINGLE.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if len(first) > 19 or len(last) > 19:  # beyond any real size: treat as unsatisfiable
        raise Unsatisfiable
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(size - suffix, 0), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # invalid range-spec: ignored
    if start >= size:
        raise Unsatisfiable
    end = min(int(last), size - 1) if last else size - 1
    return ByteRange(start, end)
