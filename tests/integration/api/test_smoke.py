from tests.integration.api.conftest import Api


async def test_tenant_account_message_round_trip(api: Api) -> None:
    key = await api.new_tenant("acme")
    await api.new_account("acme")
    r = await api.client.post(
        "/commands/add-messages",
        headers={"X-API-Token": key},
        json={
            "messages": [
                {
                    "id": "m1",
                    "tenant_id": "acme",
                    "account_id": "smtp1",
                    "from": "a@example.org",
                    "to": "b@example.org",
                    "subject": "hi",
                }
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True, "queued": 1, "rejected": []}
    r = await api.client.get(
        "/messages", params={"tenant_id": "acme"}, headers={"X-API-Token": key}
    )
    assert [m["id"] for m in r.json()["messages"]] == ["m1"]
