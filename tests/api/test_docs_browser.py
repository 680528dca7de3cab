"""``/v1/docs`` in a real browser: Debian's chromium driven by Playwright
(no browser download; scripts/host-deps installs chromium). The page must
render every operation from the OpenAPI document, without a token and
without network access beyond the engine itself."""

from __future__ import annotations

import os

import pytest
from playwright.async_api import Request, async_playwright, expect

from engine.api.openapi import openapi_document
from tests.api.conftest import Api

CHROMIUM = "/usr/bin/chromium"


async def test_docs_page_renders_operations_offline(api: Api) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/host-deps (installs Debian's chromium)")
    base = f"http://127.0.0.1:{api.engine.api_port}"
    elsewhere: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page()

            def note(request: Request) -> None:
                if not request.url.startswith(base):
                    elsewhere.append(request.url)

            page.on("request", note)
            await page.goto(f"{base}/v1/docs")
            post_calls = page.locator(
                '.opblock-post:has(.opblock-summary-path[data-path="/v1/calls"])'
            )
            await expect(post_calls).to_be_visible(timeout=20_000)
            # Every documented operation is on the page.
            for path, ops in openapi_document()["paths"].items():
                for method in ops:
                    if method == "parameters":
                        continue
                    block = page.locator(
                        f'.opblock-{method}:has(.opblock-summary-path[data-path="{path}"])'
                    )
                    await expect(block).to_have_count(1)
            # Expanding POST /v1/calls shows its header parameter and body.
            await post_calls.locator(".opblock-summary").click()
            await expect(post_calls.locator(".parameters")).to_contain_text("Idempotency-Key")
            body = post_calls.locator(".opblock-section-request-body")
            await expect(body).to_be_visible()
            # The group example names a group the sandbox config has.
            await body.locator("select:not(.content-type)").select_option("group")
            await expect(body).to_contain_text('"trunk_group": "sandbox-outbound"')
            # The cdrs query parameter shows the pattern the server enforces.
            cdrs = page.locator('.opblock-get:has(.opblock-summary-path[data-path="/v1/cdrs"])')
            await cdrs.locator(".opblock-summary").click()
            await expect(cdrs.locator(".parameters")).to_contain_text("call_id")
            await expect(cdrs.locator(".parameters")).to_contain_text("^[A-Za-z0-9]")
        finally:
            await browser.close()
    assert elsewhere == [], f"the page fetched from outside the engine: {elsewhere}"
