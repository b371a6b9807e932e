"""A context manager over `start()` and `stop()`, for things that run in the background."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Service:
    """Subclasses implement `start()` (returning self once ready) and `stop()`."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
