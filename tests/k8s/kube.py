"""A small Kubernetes client for the tests (httpx), plus `kubectl` for what people type."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from tests.k8s.control_plane import ControlPlane

T = TypeVar("T")
API = "mailproxy.genropy.org/v1alpha1"
PLURALS = {
    "Tenant": "tenants",
    "SmtpAccount": "smtpaccounts",
    "MailProxyInstance": "mailproxyinstances",
}


def _path(kind: str, namespace: str, name: str | None = None) -> str:
    if kind == "Secret":
        base = f"/api/v1/namespaces/{namespace}/secrets"
    elif kind == "Event":
        base = f"/api/v1/namespaces/{namespace}/events"
    else:
        base = f"/apis/{API}/namespaces/{namespace}/{PLURALS[kind]}"
    return base if name is None else f"{base}/{name}"


@dataclass
class Kube:
    """Namespaced calls on the test control plane."""

    plane: ControlPlane
    client: httpx.AsyncClient
    namespace: str

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        r = await self.client.post(_path(obj["kind"], self.namespace), json=obj)
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    async def try_create(self, obj: dict[str, Any]) -> httpx.Response:
        return await self.client.post(_path(obj["kind"], self.namespace), json=obj)

    async def get(self, kind: str, name: str) -> dict[str, Any] | None:
        r = await self.client.get(_path(kind, self.namespace, name))
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def patch(self, kind: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        r = await self.client.patch(
            _path(kind, self.namespace, name),
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def delete(self, kind: str, name: str) -> None:
        r = await self.client.delete(_path(kind, self.namespace, name))
        assert r.status_code in (200, 202, 404), r.text

    async def events(self) -> list[dict[str, Any]]:
        r = await self.client.get(_path("Event", self.namespace))
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    async def secret_value(self, name: str, key: str) -> str | None:
        secret = await self.get("Secret", name)
        if secret is None or key not in (secret.get("data") or {}):
            return None
        return base64.b64decode(secret["data"][key]).decode()

    async def kubectl(
        self, *args: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl in this namespace, as a person would; never raises on failure."""
        env = {**os.environ, "KUBECONFIG": str(self.plane.kubeconfig)}
        return await asyncio.to_thread(
            subprocess.run,
            [str(self.plane.kubectl), "-n", self.namespace, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )


def secret(name: str, **values: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "stringData": values,
    }


def resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec}


def ready(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """The Ready condition of an object, if it has one."""
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return None


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 60.0
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout`.

    Not a timed assertion: the deadline only bounds a wait for something that must happen.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"timed out waiting for {what}; last seen: {json.dumps(last, default=str)}"
    )


async def wait_ready(
    kube: Kube, kind: str, name: str, *, generation: int | None = None, timeout: float = 60.0
) -> dict[str, Any]:
    """The object once Ready=True (at `generation` when given, as observedGeneration)."""

    async def probe() -> dict[str, Any] | None:
        obj = await kube.get(kind, name)
        condition = ready(obj)
        if obj is None or condition is None or condition.get("status") != "True":
            return None
        observed = obj["status"].get("observedGeneration")
        if generation is not None and observed != generation:
            return None
        return obj

    return await eventually(probe, f"{kind} {name} Ready", timeout)


async def wait_not_ready(kube: Kube, kind: str, name: str, reason: str) -> dict[str, Any]:
    """The Ready=False condition with `reason` once the object shows it."""

    async def probe() -> dict[str, Any] | None:
        condition = ready(await kube.get(kind, name))
        if condition and condition["status"] == "False" and condition["reason"] == reason:
            return condition
        return None

    return await eventually(probe, f"{kind} {name} Ready=False ({reason})")


def tenant_spec(**spec: Any) -> dict[str, Any]:
    return {"clientBaseUrl": "https://app.example", **spec}


def account_spec(tenant: str, **spec: Any) -> dict[str, Any]:
    return {
        "tenantRef": {"name": tenant},
        "host": "smtp.example",
        "port": 587,
        "username": "mailer",
        "passwordSecretRef": {"name": "smtp", "key": "password"},
        **spec,
    }
