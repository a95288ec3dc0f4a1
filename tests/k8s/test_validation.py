"""The API server refuses invalid resources, saying what is wrong in words a person follows.

Schema rules (types, enums, ranges) come from the structural schema; what a schema cannot say
(basic auth needs a user and a password, implicit TLS means port 465, ids never change) from
CEL rules. Objects are applied with kubectl, as a person would.
"""

from __future__ import annotations

import json

import pytest

from tests.k8s.kube import Kube, account_spec, resource, tenant_spec

pytestmark = pytest.mark.k8s


async def _refused(kube: Kube, obj: dict[str, object]) -> str:
    result = await kube.kubectl("apply", "-f", "-", stdin=json.dumps(obj))
    assert result.returncode != 0, f"accepted: {json.dumps(obj)}"
    assert await kube.get(str(obj["kind"]), obj["metadata"]["name"]) is None  # type: ignore[index]
    return result.stderr


@pytest.mark.parametrize(
    ("kind", "spec", "says"),
    [
        # CEL rules
        (
            "Tenant",
            tenant_spec(clientAuth={"method": "basic", "user": "app"}),
            "basic auth needs a user and a passwordSecretRef",
        ),
        (
            "Tenant",
            tenant_spec(clientAuth={"method": "bearer"}),
            "bearer auth needs a tokenSecretRef",
        ),
        (
            "Tenant",
            tenant_spec(largeFile={"enabled": True, "action": "rewrite"}),
            "largeFile.action 'rewrite' needs a storageUrl",
        ),
        (
            "SmtpAccount",
            account_spec("shop", port=587, tls="implicit"),
            "tls: implicit (TLS from the first byte) is used on port 465",
        ),
        ("SmtpAccount", account_spec("shop", port=465), "port 465 expects implicit TLS"),
        (
            "SmtpAccount",
            account_spec("shop", username=None),
            "passwordSecretRef needs a username",
        ),
        (
            "SmtpAccount",
            account_spec("shop", pec={"enabled": True}),
            "pec.enabled needs pec.imap",
        ),
        (
            "MailProxyInstance",
            {"bounce": {"enabled": True, "imapHost": "imap.example"}},
            "bounce.enabled needs imapHost, imapUser and imapPasswordSecretRef",
        ),
        # structural schema
        ("SmtpAccount", account_spec("shop", port=70000), "should be less than or equal to 65535"),
        ("SmtpAccount", account_spec("shop", tls="ssl"), 'Unsupported value: "ssl"'),
        ("SmtpAccount", {"host": "smtp.example"}, "spec.tenantRef: Required value"),
        ("Tenant", tenant_spec(deletionPolicy="Orphan"), 'Unsupported value: "Orphan"'),
        ("Tenant", tenant_spec(tenantId="has space"), "spec.tenantId"),
        (
            "Tenant",
            tenant_spec(largeFile={"fileTtlDays": 3651}),
            "should be less than or equal to 3650",
        ),
    ],
)
async def test_invalid_resources_are_refused_with_a_reason(
    kube: Kube, kind: str, spec: dict[str, object], says: str
) -> None:
    spec = {k: v for k, v in spec.items() if v is not None}
    message = await _refused(kube, resource(kind, "bad", spec))
    assert says in message, message


async def test_names_that_are_not_ids_need_an_explicit_id(kube: Kube) -> None:
    message = await _refused(kube, resource("Tenant", "shop.example", tenant_spec()))
    assert "metadata.name is not a valid tenant id" in message
    assert "set spec.tenantId" in message
    ok = await kube.kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(resource("Tenant", "shop.example", tenant_spec(tenantId="shop"))),
    )
    assert ok.returncode == 0, ok.stderr


async def test_ids_cannot_change_after_creation(kube: Kube) -> None:
    await kube.create(resource("Tenant", "shop", tenant_spec(tenantId="shop")))
    renamed = await kube.kubectl(
        "patch", "tenant", "shop", "--type=merge", "-p", '{"spec": {"tenantId": "other"}}'
    )
    assert renamed.returncode != 0
    assert "tenantId cannot be changed" in renamed.stderr
    dropped = await kube.kubectl(
        "patch", "tenant", "shop", "--type=merge", "-p", '{"spec": {"tenantId": null}}'
    )
    assert dropped.returncode != 0
    assert "tenantId cannot be added or removed after creation" in dropped.stderr
