"""Admin verbs against a running instance: tenants, API keys, accounts, messages, suspension,
`--url`/`--token` targeting, and how errors look (one line with the HTTP status, exit 1)."""

from __future__ import annotations

import httpx

from tests.integration.cli.conftest import Lab, write_eml


def _status(lab: Lab, token: str) -> int:
    r = httpx.get(f"{lab.url}/status", headers={"X-API-Token": token}, timeout=10)
    return r.status_code


def test_tenants_add_list_show_update_delete(lab: Lab) -> None:
    added = lab.json(
        "tenants", "add", "t-crud", "--name", "Crud Inc", "--base-url", "http://127.0.0.1:9",
        "--auth-method", "bearer", "--auth-token", "app-secret", "--rate-limit-hourly", "100",
    )  # fmt: skip
    assert added["id"] == "t-crud"
    assert len(added["api_key"]) == 43

    listed = {t["id"]: t for t in lab.json("tenants", "list")}
    assert listed["t-crud"]["name"] == "Crud Inc"
    assert "t-crud" in lab.run("tenants", "list").stdout

    shown = lab.json("tenants", "show", "t-crud")
    assert shown["client_auth"]["method"] == "bearer"
    assert shown["rate_limits"] == {"hourly": 100}
    assert "app-secret" not in lab.run("tenants", "show", "t-crud").stdout

    lab.run("tenants", "update", "t-crud", "--name", "Renamed", "--inactive")
    shown = lab.json("tenants", "show", "t-crud")
    assert (shown["name"], shown["active"]) == ("Renamed", False)
    assert lab.json("t-crud", "info")["name"] == "Renamed"

    nothing = lab.run("tenants", "update", "t-crud", ok=False)
    assert nothing.returncode == 2
    assert "nothing to update" in nothing.stderr

    unconfirmed = lab.run("tenants", "delete", "t-crud", ok=False)
    assert unconfirmed.returncode == 2
    assert "--force" in unconfirmed.stderr
    lab.run("tenants", "delete", "t-crud", "--force")

    gone = lab.run("tenants", "show", "t-crud", ok=False)
    assert gone.returncode == 1
    assert gone.stdout == ""
    assert gone.stderr == "error: HTTP 404: Tenant 't-crud' not found\n"


def test_api_key_rotate_replaces_the_key(lab: Lab) -> None:
    first = lab.json("tenants", "add", "t-key")["api_key"]
    assert _status(lab, first) == 200
    rotated = lab.json("t-key", "api-key", "rotate")["api_key"]
    assert rotated != first
    assert _status(lab, first) == 401
    assert _status(lab, rotated) == 200
    lab.run("t-key", "api-key", "revoke")
    assert _status(lab, rotated) == 401


def test_accounts_add_list_delete_never_show_passwords(lab: Lab) -> None:
    lab.run("tenants", "add", "t-acc")
    lab.run(
        "t-acc", "accounts", "add", "relay", "--host", "smtp.example.org", "--port", "587",
        "--user", "mailer", "--password", "pw-123-secret", "--tls", "--limit-minute", "30",
    )  # fmt: skip
    [account] = lab.json("t-acc", "accounts", "list")
    assert account["id"] == "relay"
    assert (account["host"], account["port"], account["user"]) == (
        "smtp.example.org",
        587,
        "mailer",
    )
    assert account["use_tls"] is True
    assert account["limit_per_minute"] == 30
    table = lab.run("t-acc", "accounts", "list").stdout
    assert "relay" in table
    assert "pw-123-secret" not in table + str(account)

    bad_port = lab.run(
        "t-acc", "accounts", "add", "x", "--host", "h.example.org", "--port", "70000", ok=False
    )
    assert bad_port.returncode == 1
    assert bad_port.stderr.startswith("error: HTTP 422: port: ")
    assert bad_port.stderr.count("\n") == 1

    lab.run("t-acc", "accounts", "delete", "relay", "--force")
    assert lab.json("t-acc", "accounts", "list") == []
    missing = lab.run("t-acc", "accounts", "delete", "relay", "--force", ok=False)
    assert missing.returncode == 1
    assert missing.stderr == "error: HTTP 400: account not found or not owned by tenant\n"


def test_messages_list_filters_and_suspend_activate(lab: Lab) -> None:
    lab.run("tenants", "add", "t-msg")
    # A closed port: nothing is delivered while the tenant is suspended, and it stays so.
    lab.run("t-msg", "accounts", "add", "a1", "--host", "127.0.0.1", "--port", "9")
    held = lab.json("t-msg", "suspend")
    assert held["suspended_batches"] == ["*"]

    for n in (1, 2, 3):
        eml = write_eml(lab.cli.root / f"m{n}.eml", message_id=f"<msg-{n}@example.org>")
        lab.run("t-msg", "send", str(eml))
    pending = lab.json("t-msg", "messages", "list", "--status", "pending")
    assert sorted(m["id"] for m in pending) == [f"msg-{n}@example.org" for n in (1, 2, 3)]
    assert lab.json("t-msg", "messages", "list", "--status", "sent") == []
    assert len(lab.json("t-msg", "messages", "list", "--limit", "2")) == 2
    table = lab.run("t-msg", "messages", "list").stdout
    assert "msg-1@example.org" in table
    assert "pending" in table
    assert lab.json("info")["pending"] >= 3
    [listed] = lab.cli.json("list")
    assert listed["pending"] >= 3

    refused = lab.run("t-msg", "activate", "--batch", "B1", ok=False)
    assert refused.returncode == 1
    assert refused.stderr == (
        "error: HTTP 400: tenant not found or cannot activate single batch from full suspension\n"
    )
    activated = lab.json("t-msg", "activate")
    assert activated["suspended_batches"] == []
    assert activated["pending_messages"] == 3
    batch = lab.json("t-msg", "suspend", "--batch", "NL-1")
    assert batch["suspended_batches"] == ["NL-1"]
    assert lab.json("t-msg", "run-now") == {"ok": True}
    assert lab.json("run-now") == {"ok": True}
    lab.run("tenants", "delete", "t-msg", "--force")


def test_url_and_token_reach_any_instance(lab: Lab) -> None:
    key = lab.json("tenants", "add", "t-remote")["api_key"]
    remote = ("elsewhere", "tenants", "list", "--url", lab.url, "--token", lab.admin_token)
    assert "t-remote" in {t["id"] for t in lab.cli.json(*remote)}

    env = lab.cli.env(GMP_URL=lab.url, GMP_API_TOKEN=lab.admin_token)
    assert "t-remote" in {t["id"] for t in lab.cli.json("elsewhere", "tenants", "list", env=env)}

    no_token = lab.cli.run("elsewhere", "tenants", "list", "--url", lab.url, ok=False)
    assert no_token.returncode == 2
    assert "--url needs --token" in no_token.stderr

    # A tenant's own key: its own verbs work, admin verbs are refused with the API's answer.
    as_tenant = ("--url", lab.url, "--token", key)
    assert lab.cli.json("elsewhere", "t-remote", "accounts", "list", *as_tenant) == []
    denied = lab.cli.run("elsewhere", "tenants", "list", *as_tenant, ok=False)
    assert denied.returncode == 1
    assert denied.stderr == (
        "error: HTTP 403: Admin token required, tenant tokens not allowed for this operation\n"
    )
    other = lab.cli.run("elsewhere", "t-other", "accounts", "list", *as_tenant, ok=False)
    assert other.stderr == "error: HTTP 401: Token not authorized for this tenant\n"

    unreachable = lab.cli.run(
        "elsewhere", "tenants", "list", "--url", "http://127.0.0.1:9", "--token", "x", ok=False
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("error: cannot reach http://127.0.0.1:9")


def test_missing_arguments_without_a_terminal_fail_fast(lab: Lab) -> None:
    lab.run("tenants", "add", "t-args")
    for args, hint in [
        (("tenants", "add"), "TENANT_ID"),
        (("tenants", "show"), "TENANT_ID"),
        (("t-args", "accounts", "add"), "ACCOUNT_ID"),
        (("t-args", "accounts", "add", "a1"), "--host"),
        (("t-args", "accounts", "add", "a1", "--host", "h.example.org"), "--port"),
        (("tenants", "add", "t-x", "--auth-method", "bearer"), "--auth-token"),
    ]:
        result = lab.run(*args, ok=False)
        assert result.returncode == 2, args
        assert f"missing {hint}" in result.stderr, args
        assert "no terminal" in result.stderr
    assert "t-x" not in {t["id"] for t in lab.json("tenants", "list")}
