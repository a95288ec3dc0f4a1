# SPDX-License-Identifier: Apache-2.0
"""Message priorities: 0 (immediate) to 3 (low); the API accepts ints or labels."""

from __future__ import annotations

LABELS = {"immediate": 0, "high": 1, "medium": 2, "low": 3}
DEFAULT_PRIORITY = 2


def normalise_priority(value: object, default: int = DEFAULT_PRIORITY) -> int:
    """An int in 0..3: labels map, numbers clamp, anything else falls back to `default`."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return min(max(value, 0), 3)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in LABELS:
            return LABELS[text]
        if text.lstrip("-").isdigit():
            return min(max(int(text), 0), 3)
    return default
