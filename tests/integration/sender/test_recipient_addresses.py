"""Every surface names a recipient as the app submitted it, with the same fields (issue 10
items 3-4): the delivery report, GET /messages and GET /messages/{id}/events, end to end
through the API, a real sender, aiosmtpd and a real sync receiver."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.api.conftest import running_api
from tests.integration.api.payloads import add_messages, list_messages, message
from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.servers import HttpApp, SmtpSink, http_server, smtp_server
from tests.integration.sender.test_reporter import SYNC, answering, items

pytestmark = pytest.mark.usefixtures("either_exchange")

TO = [
    "Ann <Ann@Bücher.example>",
    "Ann@BÜCHER.example",  # the same mailbox: named once, shown as first written
    "Bad <bad@EXAMPLE.org>",
]
CC = "Grey <grey@Example.ORG>, Gone@Example.org"


async def test_outcomes_show_each_address_as_submitted_on_every_surface(world: World) -> None:
    sink = SmtpSink(
        rcpt_replies={
            "bad@example.org": "550 5.1.1 User unknown",
            "grey@example.org": "451 4.7.1 Greylisted",
        }
    )
    receiver = HttpApp({SYNC: answering()})
    async with (
        smtp_server(sink) as port,
        http_server(receiver) as app,
        running_api(world.dsn) as api,
    ):
        await world.tenant("acme", client_base_url=app.url)
        await world.account("acme", "smtp1", port)
        r = await api.client.post(
            "/suppressions",
            json={"tenant_id": "acme", "address": "gone@example.org"},
            headers=api.admin(),
        )
        assert r.status_code in (200, 201), r.text
        r = await add_messages(api, [message("m1", to=TO, cc=CC)])
        assert r.json()["queued"] == 1, r.text
        async with running_sender(world):
            await eventually(lambda: _reported(app))
        [listed] = (await list_messages(api))["messages"]
        r = await api.client.get(
            "/messages/m1/events", params={"tenant_id": "acme"}, headers=api.admin()
        )
        assert r.status_code == 200, r.text
        events = r.json()
    # The envelope carries the normalised addresses, each mailbox once.
    assert sink.rcpts_seen[:3] == [
        "Ann@xn--bcher-kva.example",
        "bad@example.org",
        "grey@example.org",
    ]
    [item] = items(app)
    expected = {
        "Ann <Ann@Bücher.example>": {"status": "accepted", "code": 250, "reason": None},
        "Bad <bad@EXAMPLE.org>": {
            "status": "refused",
            "code": 550,
            "reason": "550 5.1.1 User unknown",
        },
        "Grey <grey@Example.ORG>": {
            "status": "deferred",
            "code": 451,
            "reason": "451 4.7.1 Greylisted",
        },
        "Gone@Example.org": {"status": "refused", "code": None, "reason": "recipient suppressed"},
    }
    # The same list, item for item and in envelope order, on every surface.
    assert item["recipients"] == listed["recipients"] == events["recipients"]
    for surface in (item["recipients"], listed["recipients"], events["recipients"]):
        assert [r["address"] for r in surface] == list(expected)
        assert {r["address"]: _fields(r) for r in surface} == expected
        # One serializer: the same keys everywhere, nulls included.
        assert all(set(r) == {"address", "status", "code", "reason"} for r in surface)
    assert item["deferred_reason"] == "Grey <grey@Example.ORG>: 451 4.7.1 Greylisted"


def _fields(recipient: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in recipient.items() if k != "address"}


async def _reported(app: HttpApp) -> bool:
    return any(i["id"] == "m1" for i in items(app))
