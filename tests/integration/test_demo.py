"""`hookql demo`, shortened: the whole tour on its own embedded database, engine and receiver."""

from __future__ import annotations

import io

import pytest

from app.config import Settings
from app.demo import run_demo

pytestmark = pytest.mark.integration  # an embedded PostgreSQL, an engine and a local receiver


async def test_demo_delivers_signed_webhooks_to_its_receiver() -> None:
    out = io.StringIO()
    summary = await run_demo(Settings(), seconds=5, out=out)
    text = out.getvalue()
    assert summary.deliveries > 0, text
    assert summary.verified == summary.received > 0, text
    assert "✓ signature verified" in text
    assert "REJECTED" not in text
    assert "— summary —" in text
    assert summary.changes >= summary.actions > 0
