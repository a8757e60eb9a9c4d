"""Group commit: calls that arrive while a batch is in flight go together in the next one.

As TigerBeetle batches transfers: at low load a call finds nothing in flight and goes at once
(waiting for no timer); under load, every call that arrived during one database round trip
shares the next, so commits per request fall as the load rises. Each call still gets its own
result or its own error, and a caller that stops waiting (a client gone, a timeout) does not
stop the batch the others wait on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

Call = TypeVar("Call")
Result = TypeVar("Result")


class GroupCommit(Generic[Call, Result]):
    """Runs `run(calls)` for the calls waiting, one batch in flight at a time, at most
    `size_max` calls each; `run` answers each call, in order."""

    def __init__(
        self,
        run: Callable[[Sequence[Call]], Awaitable[Sequence[Result | BaseException]]],
        size_max: int,
    ) -> None:
        assert size_max > 0, size_max
        self._run = run
        self._size_max = size_max
        self._waiting: deque[tuple[Call, asyncio.Future[Result]]] = deque()
        self._flight: asyncio.Task[None] | None = None

    async def submit(self, call: Call) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((call, future))
        if self._flight is None:
            self._flight = asyncio.create_task(self._fly())
        # Shielded: a caller cancelled while waiting leaves the batch (and its result) intact.
        return await asyncio.shield(future)

    async def drain(self) -> None:
        """Wait until every call submitted so far has its answer (at shutdown)."""
        while self._flight is not None:
            await asyncio.shield(self._flight)

    async def _fly(self) -> None:
        try:
            while self._waiting:
                count = min(len(self._waiting), self._size_max)
                batch = [self._waiting.popleft() for _ in range(count)]
                try:
                    outcomes = await self._run([call for call, _ in batch])
                    assert len(outcomes) == len(batch), (len(outcomes), len(batch))
                except Exception as error:  # the whole batch failed: each call says so
                    outcomes = [error] * len(batch)
                except BaseException:  # cancelled (the loop is closing): nobody is answered
                    self._waiting.extendleft(reversed(batch))
                    raise
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._flight = None
            while self._waiting:
                self._waiting.popleft()[1].cancel()
