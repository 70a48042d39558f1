"""Asserting that bad input logs no traceback."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fails when anything logs an error or a traceback meanwhile: hookql's loggers, strawberry's,
    asyncio's, and uvicorn's, which do not propagate to the root logger that caplog watches (so
    its handler is added to them here)."""
    uvicorn = logging.getLogger("uvicorn")
    uvicorn.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING):
            yield
    finally:
        uvicorn.removeHandler(caplog.handler)
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, "\n".join(caplog.handler.format(r) for r in bad)
