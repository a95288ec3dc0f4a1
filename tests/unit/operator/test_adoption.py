"""Who may take an existing row: its manager, the resource that released it, or one that asks."""

from __future__ import annotations

from typing import Any

import pytest

from mail_proxy_operator.context import ResourceRef
from mail_proxy_operator.errors import AdoptionRefused, OwnedElsewhere
from mail_proxy_operator.reconcile import _check_owner

REF = ResourceRef(kind="Tenant", namespace="team-b", name="acme", uid="u", generation=1)


def _row(managed_by: str | None, released_by: str | None = None) -> dict[str, Any]:
    return {"managed_by": managed_by, "released_by": released_by}


def test_a_new_row_and_its_own_row_are_taken() -> None:
    _check_owner(None, REF, "tenant 'acme'")
    _check_owner(_row("Tenant/team-b/acme"), REF, "tenant 'acme'")


def test_a_row_managed_by_another_resource_is_never_taken() -> None:
    with pytest.raises(OwnedElsewhere, match="already managed by Tenant/team-a/acme"):
        _check_owner(_row("Tenant/team-a/acme"), REF, "tenant 'acme'", adopt="acme")


@pytest.mark.parametrize(
    ("released_by", "origin"),
    [(None, "created through the REST API"), ("Tenant/team-a/acme", "released by Tenant/team-a")],
)
def test_an_unmanaged_row_is_refused_unless_asked(released_by: str | None, origin: str) -> None:
    with pytest.raises(AdoptionRefused) as caught:
        _check_owner(_row(None, released_by), REF, "tenant 'acme'")
    assert caught.value.reason == "Conflict"
    assert origin in caught.value.message
    assert "mailproxy.genropy.org/adopt" in caught.value.message
    _check_owner(_row(None, released_by), REF, "tenant 'acme'", adopt="acme")


def test_the_resource_that_released_a_row_takes_it_back_unasked() -> None:
    _check_owner(_row(None, "Tenant/team-b/acme"), REF, "tenant 'acme'")
