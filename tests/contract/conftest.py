"""The ``dut`` fixture: every contract test runs once per switch kind.

A scenario written against ``dut`` (a :class:`tests.contract.drivers.DriverUnderTest`) runs
on Asterisk (the real sandbox; marked ``asterisk``) and on FreeSWITCH (the fake, or a real
switch when ``ENGINE_TEST_FREESWITCH`` is set).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.contract.drivers import DRIVERS, DriverUnderTest


@pytest.fixture(
    params=[pytest.param("asterisk", marks=pytest.mark.asterisk), pytest.param("freeswitch")]
)
async def dut(request: pytest.FixtureRequest) -> AsyncIterator[DriverUnderTest]:
    adapter = DRIVERS[request.param]()
    try:
        await adapter.open()
        yield adapter
    finally:
        await adapter.close()


@pytest.fixture
def call_id() -> str:
    """A fresh call id per test: events are filtered by it, since other tests may place
    calls on the same switch at the same time."""
    return str(uuid.uuid4())
