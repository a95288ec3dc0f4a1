"""The operator's RBAC, exactly: the chart's rules applied to a real API server and read back
with `kubectl auth can-i --list` as the operator's ServiceAccount (issue 16, item 6)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid

import pytest

from tests.k8s.control_plane import ROOT
from tests.k8s.kube import Kube

pytestmark = pytest.mark.k8s

CHART = ROOT / "charts" / "mail-proxy"
ROW = re.compile(r"^(\S+)\s+(\[[^\]]*\])\s+(\[[^\]]*\])\s+(\[[^\]]*\])\s*$")
CRS = ("mailproxyinstances", "tenants", "smtpaccounts")
Rules = set[tuple[str, str, str]]


def _namespaced(key_secret: str | None) -> Rules:
    """What the operator may do in a namespace it serves (and, with `key_secret`, its own)."""
    rules: Rules = set()
    for plural in CRS:
        for verb in ("get", "list", "watch", "patch"):
            rules.add((f"{plural}.mailproxy.genropy.org", "", verb))
        rules.add((f"{plural}.mailproxy.genropy.org/status", "", "patch"))
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
        rules.add(("secrets", "", verb))
    rules.add(("events", "", "create"))
    if key_secret is not None:
        for verb in ("get", "create", "update"):
            rules.add(("leases.coordination.k8s.io", "", verb))
        rules.add(("secrets", f"[{key_secret}]", "get"))
    return rules


async def _run(kube: Kube, *args: str, stdin: str | None = None) -> str:
    result = await asyncio.to_thread(
        subprocess.run,
        [str(a) for a in args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={"KUBECONFIG": str(kube.plane.kubeconfig), "HOME": "/tmp", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


async def _install_rbac(kube: Kube, release: str, *sets: str) -> None:
    helm = kube.plane.bin_dir / "helm"
    if not helm.is_file():
        pytest.skip(f"{helm} missing (scripts/k8s-tools.sh builds it)")
    flags = [item for value in sets for item in ("--set", value)]
    rendered = await _run(
        kube,
        helm,
        "template",
        release,
        CHART,
        "--namespace",
        kube.namespace,
        "--set",
        "database.url=postgresql://u@db/mp",
        *flags,
        "--show-only",
        "templates/operator-rbac.yaml",
        "--show-only",
        "templates/serviceaccounts.yaml",
    )
    await _run(kube, kube.plane.kubectl, "apply", "-f", "-", stdin=rendered)


async def _can(kube: Kube, account: str, namespace: str) -> Rules:
    """(resource, resource names, verb) the ServiceAccount may use in `namespace`, beyond what
    every authenticated user may (discovery, self-reviews)."""
    out = await _run(
        kube,
        kube.plane.kubectl,
        "auth",
        "can-i",
        "--list",
        f"--as=system:serviceaccount:{kube.namespace}:{account}",
        "-n",
        namespace,
    )
    rules: Rules = set()
    for line in out.splitlines()[1:]:
        match = ROW.match(line)
        if match is None:
            continue
        resource, _, names, verbs = match.groups()
        names = "" if names == "[]" else names
        for verb in verbs.strip("[]").split():
            rules.add((resource, names, verb))
    return rules


async def test_the_operator_is_namespaced_by_default_with_only_the_verbs_it_uses(
    kube: Kube,
) -> None:
    release = f"r{uuid.uuid4().hex[:8]}"
    await _install_rbac(kube, release)
    account, key_secret = f"{release}-mail-proxy-operator", f"{release}-mail-proxy-encryption-key"
    baseline = await _can(kube, "nobody", kube.namespace)

    assert await _can(kube, account, kube.namespace) - baseline == _namespaced(key_secret)
    # Nowhere else: not kube-system, not another team's namespace, nothing cluster-wide.
    assert await _can(kube, account, "kube-system") - baseline == set()
    assert await _can(kube, account, "other-team") - baseline == set()
    for verb, what in (("watch", "customresourcedefinitions"), ("list", "namespaces")):
        result = await kube.kubectl(
            "auth", "can-i", verb, what, f"--as=system:serviceaccount:{kube.namespace}:{account}"
        )
        assert result.stdout.strip() == "no", (verb, what, result.stdout, result.stderr)


async def test_cluster_wide_only_when_asked(kube: Kube) -> None:
    release = f"r{uuid.uuid4().hex[:8]}"
    await _install_rbac(kube, release, "operator.clusterWide=true")
    account, key_secret = f"{release}-mail-proxy-operator", f"{release}-mail-proxy-encryption-key"
    baseline = await _can(kube, "nobody", "other-team")
    assert await _can(kube, account, "other-team") - baseline == _namespaced(None)
    assert await _can(kube, account, kube.namespace) - baseline == _namespaced(key_secret)
