"""`large_file_config` parsing: v0.6 defaults, threshold and the exact reject reason."""

from __future__ import annotations

import pytest

from mail_proxy.large_files.policy import (
    MIB,
    Action,
    LargeFilePolicy,
    link_base_problem,
    reject_reason,
)


def test_absent_or_disabled_config_does_nothing() -> None:
    assert LargeFilePolicy.from_config(None) is None
    assert LargeFilePolicy.from_config({}) is None
    assert LargeFilePolicy.from_config({"enabled": False, "action": "reject"}) is None


def test_v06_defaults() -> None:
    policy = LargeFilePolicy.from_config({"enabled": True})
    assert policy == LargeFilePolicy(
        enabled=True,
        max_size_mb=10.0,
        storage_url=None,
        public_base_url=None,
        file_ttl_days=30,
        lifespan_after_download_days=None,
        action=Action.WARN,
    )
    assert policy.ttl_seconds == 30 * 86_400


def test_threshold_is_mib_compared_with_greater_than() -> None:
    policy = LargeFilePolicy.from_config({"enabled": True, "max_size_mb": 1})
    assert policy is not None
    assert not policy.is_oversize(MIB)
    assert policy.is_oversize(MIB + 1)


@pytest.mark.parametrize(
    "config",
    [
        {"enabled": True, "max_size_mb": "x"},
        {"enabled": True, "max_size_mb": float("nan")},
        {"enabled": True, "action": "shred"},
        {"enabled": True, "file_ttl_days": -1},
    ],
)
def test_unusable_stored_configs_raise(config: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - several messages, one type
        LargeFilePolicy.from_config(config)


def test_reject_reason_is_the_v06_text() -> None:
    assert reject_reason("big.zip", int(12.5 * MIB), 10.0) == (
        "Attachment 'big.zip' (12.5 MB) exceeds limit (10.0 MB)"
    )
    reason = reject_reason("a.bin", 3 * MIB, 2)
    assert reason == "Attachment 'a.bin' (3.0 MB) exceeds limit (2.0 MB)"


REWRITE = {"enabled": True, "action": "rewrite"}


@pytest.mark.parametrize(
    ("config", "needs_base"),
    [
        ({**REWRITE, "storage_url": "file:///srv/files"}, True),
        ({**REWRITE, "storage_url": "FILE:///srv/files"}, True),
        ({**REWRITE, "storage_url": "az://container/x"}, True),
        ({**REWRITE, "storage_url": "s3://b/x"}, True),  # default TTL 30 days > 7
        ({**REWRITE, "storage_url": "s3://b/x", "file_ttl_days": 7}, False),  # presigned
        ({**REWRITE, "storage_url": "gs://b/x", "file_ttl_days": 8}, True),
        (
            {
                **REWRITE,
                "storage_url": "s3://b/x",
                "file_ttl_days": 1,
                "lifespan_after_download_days": 1,
            },
            True,
        ),
        ({**REWRITE, "storage_url": "file:///srv", "public_base_url": "https://m.example"}, False),
        ({"enabled": False, "action": "rewrite", "storage_url": "file:///srv"}, False),
        ({"enabled": True, "action": "warn", "storage_url": "file:///srv"}, False),
        (None, False),
    ],
)
def test_links_through_the_download_route_need_a_base_url(
    config: dict[str, object] | None, needs_base: bool
) -> None:
    """One rule for the REST API and the Tenant resource (issue 12): the server's
    GMP_DOWNLOAD_BASE_URL stands in for a missing public_base_url."""
    problem = link_base_problem(config, None)
    assert (problem is not None) == needs_base
    if problem:
        assert "public_base_url" in problem
        assert "GMP_DOWNLOAD_BASE_URL" in problem
    assert link_base_problem(config, "https://mail.example.org") is None
