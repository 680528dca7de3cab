"""A webhook subscription takes only URLs the delivery client can use: a host that aiohttp
refuses ("0", "1.2.3": not a canonical IPv4 address; "a..b": an empty label) or a port out of
range used to be accepted and then failed every delivery until the subscription's deliveries
went dead. Found by the API fuzz run's delivery log."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine.webhooks.http import SubscriptionCreate


def subscription(url: str) -> SubscriptionCreate:
    return SubscriptionCreate.model_validate({"url": url, "event_types": ["call.ended"]})


@pytest.mark.parametrize(
    "url",
    [
        "http://0/",
        "http://000/hook",
        "http://1.2.3/",
        "http://01.2.3.4/",
        "http://256.1.1.1/",
        "http://a..b/",
        "http://./",
        "http://-a.example/",
        "http://a-.example/",
        "http://example.com:0/",
        "http://example.com:99999/",
        "http://user@example.com/",
        f"http://{'a' * 60}.{'b' * 60}.{'c' * 60}.{'d' * 60}.{'e' * 60}.example/",
    ],
)
def test_a_url_no_delivery_could_use_is_refused_naming_the_field(url: str) -> None:
    with pytest.raises(ValidationError) as err:
        subscription(url)
    (problem,) = err.value.errors()
    assert problem["loc"] == ("url",), problem


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://crm.example.com/hooks?tenant=7",
        "http://localhost:65535",
        "http://receiver-1.internal:8443/h",
        "http://10.0.0.1",
    ],
)
def test_usable_urls_are_kept_as_given(url: str) -> None:
    assert subscription(url).url == url
