"""On a terminal, missing arguments are asked for; secrets are typed hidden and never echoed."""

from __future__ import annotations

import pexpect

from tests.integration.cli.conftest import Lab


def _finish(child: pexpect.spawn) -> str:
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.logfile_read.text()
    transcript: str = child.logfile_read.text()
    assert "Traceback" not in transcript
    return transcript


def test_tenants_add_asks_for_what_is_missing(lab: Lab) -> None:
    child = lab.cli.spawn(lab.name, "tenants", "add")
    child.expect("Tenant id: ")
    child.sendline("t-asked")
    child.expect(r"Name \(empty for none\): ")
    child.sendline("Asked Ltd")
    child.expect(r"App base URL for delivery reports \(empty for none\): ")
    child.sendline("http://127.0.0.1:9/app")
    child.expect(r"Auth to the app \(none, bearer, basic\): ")
    child.sendline("bearer")
    child.expect("Bearer token: ")
    child.sendline("hidden-bearer-value")
    child.expect("Tenant 't-asked' created")
    transcript = _finish(child)
    assert "hidden-bearer-value" not in transcript

    shown = lab.json("tenants", "show", "t-asked")
    assert shown["name"] == "Asked Ltd"
    assert shown["client_base_url"] == "http://127.0.0.1:9/app"
    assert shown["client_auth"]["method"] == "bearer"


def test_accounts_add_asks_hidden_password(lab: Lab) -> None:
    lab.run("tenants", "add", "t-pw")
    child = lab.cli.spawn(lab.name, "t-pw", "accounts", "add")
    child.expect("Account id: ")
    child.sendline("relay")
    child.expect("SMTP host: ")
    child.sendline("smtp.example.org")
    child.expect("SMTP port: ")
    child.sendline("not-a-port")
    child.expect("not a valid integer")  # asked again, not a crash
    child.expect("SMTP port: ")
    child.sendline("2525")
    child.expect(r"SMTP user \(empty for none\): ")
    child.sendline("mailer")
    child.expect("SMTP password: ")
    child.sendline("typed-but-invisible")
    child.expect("SMTP account 'relay' saved")
    transcript = _finish(child)
    assert "typed-but-invisible" not in transcript

    [account] = lab.json("t-pw", "accounts", "list")
    assert (account["host"], account["port"], account["user"]) == (
        "smtp.example.org",
        2525,
        "mailer",
    )


def test_delete_asks_for_confirmation(lab: Lab) -> None:
    lab.run("tenants", "add", "t-confirm")
    child = lab.cli.spawn(lab.name, "tenants", "delete", "t-confirm")
    child.expect(r"Delete tenant 't-confirm' with its accounts and messages\? \[y/N\]: ")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1  # aborted
    assert "t-confirm" in {t["id"] for t in lab.json("tenants", "list")}

    child = lab.cli.spawn(lab.name, "tenants", "delete", "t-confirm")
    child.expect(r"\[y/N\]: ")
    child.sendline("y")
    child.expect("Tenant 't-confirm' deleted.")
    _finish(child)
    assert "t-confirm" not in {t["id"] for t in lab.json("tenants", "list")}


def test_accounts_add_with_a_user_and_no_terminal_refuses_without_a_password(lab: Lab) -> None:
    lab.run("tenants", "add", "t-nopw")
    args = ("t-nopw", "accounts", "add", "relay", "--host", "smtp.example.org", "--port", "25")
    result = lab.run(*args, "--user", "mailer", ok=False)
    assert result.returncode == 2
    assert "--password" in result.stderr
    assert lab.json("t-nopw", "accounts", "list") == []
    lab.run(*args, "--user", "mailer", "--password", "pw")
    [account] = lab.json("t-nopw", "accounts", "list")
    assert account["user"] == "mailer"
