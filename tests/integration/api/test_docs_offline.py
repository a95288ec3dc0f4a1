"""/docs and /redoc render with no network: the HTML and every asset it names come from the
service itself (no CDN), and the assets name no other host either."""

import re
from urllib.parse import urljoin, urlsplit

import pytest

from tests.integration.api.conftest import Api

_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""")


def _references(html: str) -> list[str]:
    return [a or b for a, b in _REFERENCE.findall(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_reference_page_and_every_asset_come_from_the_service(api: Api, page: str) -> None:
    r = await api.client.get(page)
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    refs = _references(r.text)
    assert refs, "the page names no asset"
    base = str(api.client.base_url)
    fetched = 0
    for ref in refs:
        absolute = urljoin(base + page, ref)
        assert urlsplit(absolute).netloc == urlsplit(base).netloc, f"{ref} is not local"
        asset = await api.client.get(absolute)
        assert asset.status_code == 200, ref
        assert asset.content, ref
        fetched += 1
        if ref.endswith((".js", ".css")):
            # A script that pulled more from a CDN would break offline too.
            assert "cdn.jsdelivr.net" not in asset.text
            assert "fonts.googleapis.com" not in asset.text
    assert fetched >= 3 if page == "/docs" else fetched >= 2


async def test_the_openapi_document_the_docs_load_is_served(api: Api) -> None:
    r = await api.client.get("/openapi.json")
    assert r.status_code == 200
    assert r.json()["info"]["title"]
