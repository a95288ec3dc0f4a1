"""Every documented route answers with the reference's shape (SPEC section 2, reference 1.3-1.4).

Shapes are compared key by key: the reference's keys must all be there with the right values;
keys we add (e.g. `status` on a message) are listed where they appear.
"""

from __future__ import annotations

import time
from typing import Any

from tests.integration.api.conftest import Api, running_api
from tests.integration.api.payloads import (
    add_messages,
    list_messages,
    message,
    tenant_with_account,
    token,
)
from tests.pg_proxy import SocketProxy


async def test_health_is_static(api: Api) -> None:
    r = await api.client.get("/health")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


async def test_ready_when_the_schema_is_current(api: Api) -> None:
    r = await api.client.get("/ready")
    assert (r.status_code, r.json()) == (200, {"status": "ready"})


async def test_not_ready_while_a_migration_is_pending(api: Api) -> None:
    async with api.pool.acquire() as conn:
        latest = await conn.fetchval("SELECT max(version) FROM schema_migrations")
        await conn.execute("DELETE FROM schema_migrations WHERE version = $1", latest)
    r = await api.client.get("/ready")
    assert r.status_code == 503
    assert r.json() == {
        "status": "not ready",
        "reason": f"schema not current: migrations [{latest}] not applied",
    }


async def test_not_ready_when_the_schema_was_edited(api: Api) -> None:
    async with api.pool.acquire() as conn:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    r = await api.client.get("/ready")
    assert r.status_code == 503
    assert "was changed after it was applied" in r.json()["reason"]


async def test_not_ready_when_postgres_hangs(dsn: str, proxy: SocketProxy) -> None:
    # A stopped (not gone) Postgres: connections stay open and nothing answers. The probe
    # fails within its own bound instead of waiting as long as Postgres hangs.
    await proxy.start()
    async with running_api(proxy.dsn(dsn)) as api:
        assert (await api.client.get("/ready")).status_code == 200
        proxy.freeze()
        try:
            r = await api.client.get("/ready")
            assert r.status_code == 503
            assert r.json()["reason"] == "database unreachable: TimeoutError"
            assert (await api.client.get("/health")).status_code == 200
        finally:
            proxy.thaw()


async def test_status(api: Api) -> None:
    key = await tenant_with_account(api)
    await tenant_with_account(api, "globex")
    await add_messages(api, [message("a1"), message("a2"), message("g1", tenant_id="globex")])
    admin = (await api.client.get("/status", headers=api.admin())).json()
    assert admin["ok"] is True
    assert admin["active"] is True
    assert admin["pending_messages"] == 3
    assert isinstance(admin["uptime_seconds"], int)
    # A tenant sees its own queue only.
    assert (await api.client.get("/status", headers=token(key))).json()["pending_messages"] == 2


async def test_metrics_are_prometheus_text_with_the_reference_families(api: Api) -> None:
    await tenant_with_account(api)
    await add_messages(api, [message("m1"), message("m2", priority=0)])
    r = await api.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = r.text.splitlines()
    for family in ("sent", "errors", "deferred", "rate_limited"):
        assert f"# TYPE gmp_{family}_total counter" in lines
    assert "# TYPE gmp_pending_messages gauge" in lines
    assert "gmp_pending_messages 2.0" in lines
    assert 'gmp_pending_by_tenant_priority{priority="0",tenant_id="acme"} 1.0' in lines
    assert "gmp_enqueued_total 2.0" in lines
    assert any(line.startswith("gmp_enqueue_seconds_count 1.0") for line in lines)


async def test_suspend_and_activate(api: Api) -> None:
    await tenant_with_account(api)
    await add_messages(
        api, [message("a", batch_code="NL-1"), message("b", batch_code="NL-2"), message("c")]
    )
    admin = api.admin()

    async def call(verb: str, batch: str | None = None) -> dict[str, Any]:
        params = {"tenant_id": "acme", **({"batch_code": batch} if batch else {})}
        r = await api.client.post(f"/commands/{verb}", params=params, headers=admin)
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result

    assert await call("suspend", "NL-2") == {
        "ok": True,
        "tenant_id": "acme",
        "batch_code": "NL-2",
        "suspended_batches": ["NL-2"],
        "pending_messages": 1,
    }
    assert (await call("suspend", "NL-1"))["suspended_batches"] == ["NL-1", "NL-2"]
    assert (await call("suspend", "NL-1"))["suspended_batches"] == ["NL-1", "NL-2"]
    assert (await call("activate", "NL-2"))["suspended_batches"] == ["NL-1"]
    assert await call("suspend") == {
        "ok": True,
        "tenant_id": "acme",
        "suspended_batches": ["*"],
        "pending_messages": 3,
    }
    assert (await call("suspend", "NL-9"))["suspended_batches"] == ["*"]
    assert (await call("activate"))["suspended_batches"] == []
    tenant = (await api.client.get("/tenant/acme", headers=admin)).json()
    assert tenant["suspended_batches"] == []


async def test_delete_messages(api: Api) -> None:
    await tenant_with_account(api)
    await add_messages(api, [message("a"), message("b")])
    r = await api.client.post(
        "/commands/delete-messages?tenant_id=acme",
        json={"ids": ["a", "zz", "a"]},
        headers=api.admin(),
    )
    assert r.json() == {"ok": True, "removed": 1, "not_found": ["zz"], "unauthorized": []}
    assert [m["id"] for m in (await list_messages(api))["messages"]] == ["b"]
    r = await api.client.post(
        "/commands/delete-messages?tenant_id=acme", json={}, headers=api.admin()
    )
    assert r.json() == {"ok": True, "removed": 0, "not_found": [], "unauthorized": []}


async def test_cleanup_removes_only_final_fully_reported_old_messages(api: Api) -> None:
    await tenant_with_account(api)
    await tenant_with_account(api, "globex")
    ids = ["old-reported", "new-reported", "old-unreported", "pending", "no-events"]
    await add_messages(api, [message(i) for i in ids] + [message("x", tenant_id="globex")])
    old, recent = int(time.time()) - 10 * 86400, int(time.time()) - 60
    async with api.pool.acquire() as conn:
        await conn.execute(
            "UPDATE messages SET state = 'sent', smtp_ts = $1 WHERE id <> 'pending'", old
        )
        for msg_id, reported in [
            ("old-reported", old),
            ("new-reported", recent),
            ("old-unreported", None),
        ]:
            await conn.execute(
                "INSERT INTO message_events (message_pk, tenant_id, message_id, event_type,"
                " event_ts, reported_ts) SELECT pk, tenant_id, id, 'sent', $2, $3"
                " FROM messages WHERE id = $1",
                msg_id,
                old,
                reported,
            )
    r = await api.client.post(
        "/commands/cleanup-messages?tenant_id=acme", json={}, headers=api.admin()
    )
    assert r.json() == {"ok": True, "removed": 2}  # old-reported, no-events (old smtp_ts)
    left = sorted(m["id"] for m in (await list_messages(api))["messages"])
    assert left == ["new-reported", "old-unreported", "pending"]
    assert len((await list_messages(api, "globex"))["messages"]) == 1

    r = await api.client.post(
        "/commands/cleanup-messages?tenant_id=acme",
        json={"older_than_seconds": 0},
        headers=api.admin(),
    )
    assert r.json() == {"ok": True, "removed": 1}  # new-reported


async def test_messages_shape(api: Api) -> None:
    await tenant_with_account(api, name="ACME")
    await add_messages(api, [message("m1", batch_code="B", deferred_ts=4_000_000_000)])
    (record,) = (await list_messages(api))["messages"]
    assert set(record) == {
        "pk",
        "id",
        "tenant_id",
        "tenant_name",
        "account_id",
        "priority",
        "batch_code",
        "deferred_ts",
        "created_at",
        "updated_at",
        "message",
        "is_pec",
        "status",  # ours: the stored state
        "attempts",  # ours
    }
    assert isinstance(record["pk"], str)
    assert record["tenant_name"] == "ACME"
    assert record["status"] == "deferred"
    assert record["message"]["subject"] == "Hello"
    assert "history" not in record


async def test_sent_and_error_messages_carry_their_timestamps(api: Api) -> None:
    await tenant_with_account(api)
    await add_messages(api, [message("ok"), message("bad"), message("bad2", to=["nope"])])
    async with api.pool.acquire() as conn:
        await conn.execute(
            "UPDATE messages SET state = 'sent', smtp_ts = 1700000000 WHERE id = 'ok'"
        )
        await conn.execute(
            "UPDATE messages SET state = 'error', smtp_ts = 1700000001, error = '550 no such user',"
            " error_ts = 1700000001 WHERE id = 'bad'"
        )
    records = {m["id"]: m for m in (await list_messages(api))["messages"]}
    assert (records["ok"]["status"], records["ok"]["sent_ts"]) == ("sent", 1700000000)
    assert "error" not in records["ok"]
    assert (records["bad"]["error"], records["bad"]["error_ts"]) == ("550 no such user", 1700000001)
    assert records["bad2"]["status"] == "error"


async def test_accounts(api: Api) -> None:
    await api.new_tenant("acme")
    r = await api.client.post(
        "/account",
        json={
            "id": "smtp1",
            "tenant_id": "acme",
            "host": "smtp.example.org",
            "port": 587,
            "user": "mailer",
            "password": "pw",
            "limit_per_minute": 60,
            "use_tls": True,
            "unknown_key": "ignored",
        },
        headers=api.admin(),
    )
    assert r.json() == {"ok": True}
    r = await api.client.get("/accounts?tenant_id=acme", headers=api.admin())
    body = r.json()
    assert body["ok"] is True
    (account,) = body["accounts"]
    assert {k: v for k, v in account.items() if k not in ("created_at", "updated_at")} == {
        "id": "smtp1",
        "tenant_id": "acme",
        "host": "smtp.example.org",
        "port": 587,
        "user": "mailer",
        "ttl": 300,
        "limit_per_minute": 60,
        "limit_behavior": "defer",
        "use_tls": True,
        "tls_verify": True,  # ours
        "max_connections": 20,  # ours: the global connection cap's default
        "is_pec_account": False,
        "imap_port": 993,
    }
    # Upsert: posting the same id replaces the account.
    await api.new_account("acme", host="other.example.org")
    r = await api.client.get("/accounts?tenant_id=acme", headers=api.admin())
    (account,) = r.json()["accounts"]
    assert account["host"] == "other.example.org"
    assert "user" not in account  # replaced, not merged


async def test_deleting_an_account_removes_its_messages_in_its_tenant_only(api: Api) -> None:
    await tenant_with_account(api, "acme")
    await tenant_with_account(api, "globex")
    await add_messages(api, [message("a"), message("g", tenant_id="globex")])
    r = await api.client.delete("/account/smtp1?tenant_id=acme", headers=api.admin())
    assert r.json() == {"ok": True}
    assert (await list_messages(api, "acme"))["messages"] == []
    assert [m["id"] for m in (await list_messages(api, "globex"))["messages"]] == ["g"]
    r = await api.client.get("/accounts?tenant_id=globex", headers=api.admin())
    assert [a["id"] for a in r.json()["accounts"]] == ["smtp1"]


async def test_tenant_create_replace_and_read(api: Api) -> None:
    admin = api.admin()
    full = {
        "id": "acme",
        "name": "ACME",
        "client_base_url": "https://acme.example.org",
        "client_sync_path": "/sync",
        "client_attachment_path": "/files",
        "rate_limits": {"hourly": 100},
        "large_file_config": {"enabled": False},
    }
    r = await api.client.post("/tenant", json=full, headers=admin)
    created = r.json()
    assert set(created) == {"ok", "api_key"}
    assert len(created["api_key"]) == 43

    r = await api.client.get("/tenant/acme", headers=admin)
    info = r.json()
    assert {k: v for k, v in info.items() if k not in ("created_at", "updated_at")} == {
        **full,
        "active": True,
        "suspended_batches": [],  # ours
    }
    assert info["created_at"] is not None

    # Create-or-replace: missing fields become null, the key is kept.
    r = await api.client.post("/tenant", json={"id": "acme", "name": "ACME 2"}, headers=admin)
    assert r.json() == {"ok": True}
    info = (await api.client.get("/tenant/acme", headers=admin)).json()
    assert info["name"] == "ACME 2"
    assert "client_base_url" not in info
    assert (await api.client.get("/status", headers=token(created["api_key"]))).status_code == 200


async def test_tenant_update_ignores_nulls(api: Api) -> None:
    await api.new_tenant("acme", name="ACME", client_base_url="https://a.example.org")
    # `active` is the admin's to change (issue 9); tenant-token scope: test_tenant_scope.py
    r = await api.client.put(
        "/tenant/acme", json={"name": None, "active": False}, headers=api.admin()
    )
    assert r.json() == {"ok": True}
    info = (await api.client.get("/tenant/acme", headers=api.admin())).json()
    assert (info["name"], info["active"], info["client_base_url"]) == (
        "ACME",
        False,
        "https://a.example.org",
    )


async def test_tenants_list_and_active_only(api: Api) -> None:
    await api.new_tenant("acme")
    await api.new_tenant("globex", active=False)
    r = await api.client.get("/tenants", headers=api.admin())
    assert r.json()["ok"] is True
    assert [t["id"] for t in r.json()["tenants"]] == ["acme", "globex"]
    r = await api.client.get("/tenants?active_only=true", headers=api.admin())
    assert [t["id"] for t in r.json()["tenants"]] == ["acme"]


async def test_deleting_a_tenant_removes_everything_it_owns(api: Api) -> None:
    await tenant_with_account(api, "acme")
    await tenant_with_account(api, "globex")
    await add_messages(api, [message("a", to=["bad"]), message("g", tenant_id="globex")])
    r = await api.client.delete("/tenant/acme", headers=api.admin())
    assert r.json() == {"ok": True}
    async with api.pool.acquire() as conn:
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM accounts WHERE tenant_id = 'acme') AS accounts,"
            " (SELECT count(*) FROM messages WHERE tenant_id = 'acme') AS messages,"
            " (SELECT count(*) FROM message_events WHERE tenant_id = 'acme') AS events,"
            " (SELECT count(*) FROM messages WHERE tenant_id = 'globex') AS others"
        )
    assert dict(counts) == {"accounts": 0, "messages": 0, "events": 0, "others": 1}
    r = await api.client.get("/tenant/acme", headers=api.admin())
    assert r.status_code == 404


async def test_sync_status(api: Api) -> None:
    await api.new_tenant("acme", name="ACME", client_base_url="https://a.example.org")
    await api.new_tenant("globex")
    now = int(time.time())
    async with api.pool.acquire() as conn:
        await conn.execute(
            "UPDATE tenants SET last_sync_ts = $1, dnd_until = $2, sync_failures = 3,"
            " sync_retry_at = $2, last_sync_error = 'HTTP 503' WHERE id = 'globex'",
            float(now - 10),
            now + 600,
        )
    r = await api.client.get("/tenants/sync-status", headers=api.admin())
    body = r.json()
    assert body["ok"] is True
    assert body["sync_interval_seconds"] == 300
    by_id = {t["id"]: t for t in body["tenants"]}
    assert by_id["acme"] == {
        "id": "acme",
        "name": "ACME",
        "active": True,
        "client_base_url": "https://a.example.org",
        "last_sync_ts": None,
        "next_sync_due": True,
        "in_dnd": False,
        "consecutive_failures": 0,
        "retry_at": None,
        "last_error": None,
    }
    globex = by_id["globex"]
    assert (globex["next_sync_due"], globex["in_dnd"]) == (False, True)
    assert (globex["consecutive_failures"], globex["last_error"]) == (3, "HTTP 503")


async def test_instance_read_and_update(api: Api) -> None:
    r = await api.client.get("/instance", headers=api.admin())
    info = r.json()
    assert {k: v for k, v in info.items() if k not in ("created_at", "updated_at")} == {
        "id": 1,
        "name": "mail-proxy",
        "bounce_enabled": False,
        "bounce_imap_port": 993,
        "bounce_imap_folder": "INBOX",
        "bounce_imap_ssl": True,
        "bounce_poll_interval": 60,
        # ours (issue 11): STARTTLS and what happens to processed bounces
        "bounce_imap_starttls": False,
        "bounce_processed_action": "keep",
    }
    r = await api.client.put(
        "/instance",
        json={"name": "mp-eu", "bounce_imap_user": "b", "bounce_poll_interval": 30},
        headers=api.admin(),
    )
    assert r.json() == {"ok": True}
    info = (await api.client.get("/instance", headers=api.admin())).json()
    assert (info["name"], info["bounce_imap_user"], info["bounce_poll_interval"]) == (
        "mp-eu",
        "b",
        30,
    )


async def test_put_instance_api_token_replaces_the_stored_admin_token(api: Api) -> None:
    new = "a-new-admin-token-of-enough-length"
    r = await api.client.put("/instance", json={"api_token": new}, headers=api.admin())
    assert r.json() == {"ok": True}
    assert (await api.client.get("/instance", headers=api.admin())).status_code == 401
    assert (await api.client.get("/instance", headers=token(new))).status_code == 200


async def test_command_log_and_export(api: Api) -> None:
    await tenant_with_account(api, "acme")
    await tenant_with_account(api, "globex")
    await add_messages(api, [message("m1")])
    await api.client.post("/commands/suspend?tenant_id=globex", headers=api.admin())
    admin = api.admin()

    r = await api.client.get("/command-log", headers=admin)
    body = r.json()
    assert body["ok"] is True
    assert body["total"] == len(body["commands"])
    assert [c["endpoint"] for c in body["commands"]] == [
        "addTenant",
        "addAccount",
        "addTenant",
        "addAccount",
        "addMessages",
        "suspend",
    ]
    first = body["commands"][0]
    assert set(first) == {"id", "command_ts", "endpoint", "tenant_id", "payload", "response_status"}
    assert first["payload"]["id"] == "acme"
    ts = [c["command_ts"] for c in body["commands"]]
    assert ts == sorted(ts)

    r = await api.client.get("/command-log?tenant_id=globex", headers=admin)
    assert [c["endpoint"] for c in r.json()["commands"]] == ["addTenant", "addAccount", "suspend"]
    r = await api.client.get("/command-log?endpoint_filter=Account", headers=admin)
    assert [c["endpoint"] for c in r.json()["commands"]] == ["addAccount", "addAccount"]
    r = await api.client.get("/command-log?limit=2", headers=admin)
    assert r.json()["total"] == 2
    r = await api.client.get(f"/command-log?since_ts={ts[-1] + 1}", headers=admin)
    assert r.json()["commands"] == []
    r = await api.client.get(f"/command-log?until_ts={ts[0] - 1}", headers=admin)
    assert r.json()["commands"] == []

    r = await api.client.get("/command-log/export?tenant_id=acme", headers=admin)
    exported = r.json()
    assert exported["ok"] is True
    assert [set(c) for c in exported["commands"]] == [
        {"endpoint", "tenant_id", "payload", "command_ts"}
    ] * 3
    assert exported["commands"][2]["payload"]["messages"][0]["id"] == "m1"
