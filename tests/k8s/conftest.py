"""A real Kubernetes API server for the session, and a real operator process per test.

`control_plane` (session): etcd + kube-apiserver on 127.0.0.1 from the binaries that
`scripts/k8s-tools.sh` builds, with the CRDs of `crds/` installed. Without Go (and no cached
binaries) every k8s test is skipped with the reason; with Go they run. The build itself happens
once after collection, outside any test's timeout.

`cluster` (per test): a namespace of its own, the test's own database (`dsn`), and
`mail-proxy operator` running as a subprocess against both (watching only that namespace,
repairing drift every second), stopped at the end; its log is kept to check for leaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from mail_proxy.db.pool import create_pool
from mail_proxy.encryption import SecretBox, decode_key, generate_key
from tests.conftest import free_port
from tests.k8s.control_plane import (
    ROOT,
    ControlPlane,
    ToolsUnavailable,
    start_control_plane,
    tools_bin_dir,
)
from tests.k8s.kube import Kube

_tools: dict[str, Path | str] = {}
_figures: list[str] = []
_operator_starts: list[float] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build (or find) the tool-chain before any test runs, when k8s tests are selected."""
    if any(item.get_closest_marker("k8s") for item in session.items):
        started = time.monotonic()
        try:
            _tools["bin"] = tools_bin_dir()
        except ToolsUnavailable as exc:
            _tools["skip"] = str(exc)
        except RuntimeError as exc:
            _tools["error"] = str(exc)
        else:
            _figures.append(f"k8s tools ready in {time.monotonic() - started:.1f} s")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = list(_figures)
    if _operator_starts:
        starts = sorted(_operator_starts)
        lines.append(
            f"operator process healthy after {starts[0]:.2f} s (fastest), "
            f"{starts[len(starts) // 2]:.2f} s (median), {starts[-1]:.2f} s (slowest) "
            f"over {len(starts)} start(s)"
        )
    for line in lines:
        terminalreporter.write_line(f"[k8s] {line}")


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    if "skip" in _tools:
        pytest.skip(f"no Kubernetes API server: {_tools['skip']}")
    if "error" in _tools:
        pytest.fail(f"cannot build the Kubernetes tools: {_tools['error']}")
    bin_dir = _tools.get("bin")
    if not isinstance(bin_dir, Path):
        try:
            bin_dir = tools_bin_dir()
        except ToolsUnavailable as exc:
            pytest.skip(f"no Kubernetes API server: {exc}")
    if not (bin_dir / "kubectl").is_file():
        pytest.fail(f"{bin_dir}/kubectl missing: build it (unset MAIL_PROXY_TOOLS_KUBECTL)")
    plane = start_control_plane(bin_dir)
    _figures.append(f"etcd + kube-apiserver ready in {plane.startup_seconds:.2f} s")
    try:
        env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
        started = time.monotonic()
        for args in (
            ["apply", "-f", str(ROOT / "crds")],
            ["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"],
        ):
            result = subprocess.run(
                [str(plane.kubectl), *args], env=env, capture_output=True, text=True, timeout=90
            )
            assert result.returncode == 0, result.stdout + result.stderr
        _figures.append(f"CRDs installed and established in {time.monotonic() - started:.2f} s")
        yield plane
    finally:
        plane.stop()


@dataclass
class OperatorProcess:
    """`mail-proxy operator` as a subprocess; restartable (also after SIGKILL)."""

    env: dict[str, str]
    log_path: Path
    health_url: str
    proc: subprocess.Popen[bytes] | None = None
    starts: list[float] = field(default_factory=list)

    @property
    def metrics_url(self) -> str:
        return self.health_url.replace("/healthz", "/metrics")

    async def metric(self, name: str) -> float | None:
        """The value of an unlabelled metric on /metrics (None when absent or unreachable)."""
        async with httpx.AsyncClient(timeout=5) as client:
            try:
                text = (await client.get(self.metrics_url)).text
            except httpx.HTTPError:
                return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    async def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mail_proxy_cli.main", "operator"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"operator exited ({self.proc.returncode}):\n{self.log()}")
                try:
                    if (await client.get(self.health_url)).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() - started > 60:
                    raise AssertionError(f"operator not healthy after 60 s:\n{self.log()}")
                await asyncio.sleep(0.1)
        self.starts.append(time.monotonic() - started)

    def kill(self) -> None:
        """SIGKILL: no finalizer, no cleanup, no goodbye."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    async def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.proc.wait, 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Cluster:
    """Everything a k8s test touches: the API (namespaced), the DB and the operator."""

    kube: Kube
    dsn: str
    pool: asyncpg.Pool
    key: bytes
    operator: OperatorProcess

    @property
    def box(self) -> SecretBox:
        return SecretBox(self.key)

    @property
    def namespace(self) -> str:
        return self.kube.namespace


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[Kube]:
    """A namespace of the test's own on the API server (no operator watching it)."""
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(
        base_url=control_plane.url,
        headers={"Authorization": f"Bearer {control_plane.token}"},
        verify=control_plane.ssl_context(),
        timeout=30,
    ) as client:
        r = await client.post(
            "/api/v1/namespaces",
            json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
        assert r.status_code == 201, r.text
        yield Kube(control_plane, client, namespace)


def operator_process(
    kube: Kube,
    dsn: str,
    log_path: Path,
    *,
    key_text: str,
    repair_interval_seconds: float = 1,
    **env: str,
) -> OperatorProcess:
    """`mail-proxy operator` on `dsn`, watching the test's namespace (not started); `env` adds
    or overrides GMP_* settings."""
    health_port = free_port()
    full_env = {
        **os.environ,
        "KUBECONFIG": str(kube.plane.kubeconfig),
        "GMP_DATABASE_URL": dsn,
        "MAIL_PROXY_ENCRYPTION_KEY": key_text,
        "GMP_OPERATOR_NAMESPACES": kube.namespace,
        "GMP_OPERATOR_REPAIR_INTERVAL_SECONDS": str(repair_interval_seconds),
        "GMP_OPERATOR_HEALTH_HOST": "127.0.0.1",
        "GMP_OPERATOR_HEALTH_PORT": str(health_port),
        "GMP_OPERATOR_LEASE_NAMESPACE": kube.namespace,
        "GMP_OPERATOR_LEASE_DURATION_SECONDS": "4",
        "GMP_LOG_LEVEL": "DEBUG",
        "GMP_LOG_FORMAT": "json",  # kopf's object lines then name the object (k8s_ref)
        **env,
    }
    return OperatorProcess(
        env=full_env,
        log_path=log_path,
        health_url=f"http://127.0.0.1:{health_port}/healthz",
    )


@contextlib.asynccontextmanager
async def _cluster(
    kube: Kube, dsn: str, tmp_path: Path, repair_interval_seconds: float, **env: str
) -> AsyncIterator[Cluster]:
    key_text = generate_key()
    operator = operator_process(
        kube,
        dsn,
        tmp_path / "operator.log",
        key_text=key_text,
        repair_interval_seconds=repair_interval_seconds,
        **env,
    )
    pool = await create_pool(dsn, max_size=3)
    try:
        await operator.start()
        yield Cluster(kube=kube, dsn=dsn, pool=pool, key=decode_key(key_text), operator=operator)
    finally:
        await operator.stop()
        await pool.close()
        _operator_starts.extend(operator.starts)


@pytest.fixture
async def cluster(kube: Kube, dsn: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    """The test's namespace, its own database and `mail-proxy operator` joining the two; the
    drift-repair timer ticks every second."""
    async with _cluster(kube, dsn, tmp_path, repair_interval_seconds=1) as running:
        yield running


@pytest.fixture
async def cluster_without_timer(kube: Kube, dsn: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    """As `cluster`, but the repair timer waits an hour: whatever happens is the work of the
    change handlers and the Secret watch alone."""
    async with _cluster(kube, dsn, tmp_path, repair_interval_seconds=3600) as running:
        yield running
