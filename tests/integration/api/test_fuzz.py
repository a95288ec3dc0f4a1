"""Property-based fuzzing of the live API with schemathesis (issue 9): every documented route,
with the admin token and with a tenant token, bounded examples per operation. No answer may be
a 5xx, every answer's status must be documented (`mail_proxy_api/openapi_errors.py`), its
content type and body must match the documented ones, and the server must stay up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import free_port

ENTRY = "from mail_proxy_cli.main import main; main()"
ADMIN = "fuzz-admin-token-0123456789"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


class Live:
    url: str
    tenant_key: str


LIVE = Live()


@pytest.fixture(scope="module")
def live_api(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    import asyncio

    import asyncpg

    from tests.conftest import TEMPLATE, dsn_for

    name = f"mp_fuzz_{os.getpid()}"

    async def create() -> None:
        admin = await asyncpg.connect(pg_server)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        finally:
            await admin.close()

    async def drop() -> None:
        admin = await asyncpg.connect(pg_server)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()

    asyncio.run(create())
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GMP_", "MAIL_PROXY_"))}
    env.update(
        GMP_DATABASE_URL=dsn_for(pg_server, name),
        GMP_API_TOKEN=ADMIN,
        GMP_HOST="127.0.0.1",
        GMP_PORT=str(port),
        GMP_LOG_LEVEL="ERROR",
        # configured, so /download answers 404/410 for bad links (unconfigured it is a 503)
        GMP_DOWNLOAD_SECRET="fuzz-download-secret-0123456789abcdef",
        MAIL_PROXY_ENCRYPTION_KEY="x2qSExuXs1bE6dHcLpbdNQ1n4BBwJ1dqGDvS3bS7ypo=",
    )
    log_path = Path(tmp_path_factory.mktemp("fuzz")) / "api.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-c", ENTRY, "api"], env=env, stdout=log, stderr=log)
    LIVE.url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{LIVE.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        admin = {"X-API-Token": ADMIN}
        r = httpx.post(f"{LIVE.url}/tenant", json={"id": "acme"}, headers=admin)
        LIVE.tenant_key = r.json()["api_key"]
        httpx.post(
            f"{LIVE.url}/account",
            json={"id": "smtp1", "tenant_id": "acme", "host": "127.0.0.1", "port": 2525},
            headers=admin,
        )
        yield LIVE
        assert proc.poll() is None, "the API process died: " + log_path.read_text()[-4000:]
        assert httpx.get(f"{LIVE.url}/health", timeout=5).status_code == 200
        assert "Traceback" not in log_path.read_text(), log_path.read_text()[-4000:]
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        asyncio.run(drop())


FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)


def _fuzz(url: str, token: str) -> list[str]:
    """Every operation, `max_examples` cases each; returns the failures found."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @FUZZ
        def run(case: schemathesis.Case) -> None:
            response = case.call(headers={"X-API-Token": token}, timeout=30)
            case.validate_response(response, checks=CHECKS)

        try:
            run()
        except BaseException as exc:
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:2000])
    return failures


def test_admin_input_never_yields_a_server_error(live_api: Live) -> None:
    assert _fuzz(live_api.url, ADMIN) == []


def test_tenant_input_never_yields_a_server_error(live_api: Live) -> None:
    assert _fuzz(live_api.url, live_api.tenant_key) == []
