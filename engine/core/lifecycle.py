"""One shape for every long-lived resource: ``start()``/``stop()`` plus
``async with``.

``stop()`` must be safe to call after a ``start()`` that failed half way
(it is called then, so a pool opened before a failing migration is closed),
and safe to call twice. Subclasses implement the two methods only.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncResource:
    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
