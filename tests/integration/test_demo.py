"""`hookql demo`, shortened: the whole tour on its own embedded database, engine and receiver."""

from __future__ import annotations

import io
import re

import pytest

from app.config import Settings
from app.demo import run_demo

pytestmark = pytest.mark.integration  # an embedded PostgreSQL, an engine and a local receiver

REPRICE = re.compile(r"price of (\S+) \+5%")


async def test_demo_delivers_signed_webhooks_to_its_receiver() -> None:
    out = io.StringIO()
    summary = await run_demo(Settings(), seconds=6, out=out)
    text = out.getvalue()
    assert summary.deliveries > 0, text
    assert summary.verified == summary.received > 0, text
    assert "✓ signature verified" in text
    assert "REJECTED" not in text
    assert "— summary —" in text
    assert summary.changes >= summary.actions > 0

    # the story holds: after a price change the Stock feed hears nothing of that variant (its
    # query selects no price) until its stock changes; the tour shows the skip instead
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if (repriced := REPRICE.search(line)) is None:
            continue
        sku = repriced.group(1)
        later = [entry for entry in lines[i + 1:] if f" {sku} " in f"{entry} "]
        if later:
            assert later[0].lstrip().startswith("· Stock feed") and "skipped" in later[0], (line, later[0])
    # every event not sent is explained, and the summary says what the gaps in sequences are
    marked = [line for line in lines if line.lstrip().startswith("· ")]
    assert len(marked) == summary.events["skipped"] + summary.events["superseded"], text
    assert "sequence numbers" in text and "gap" in text
    assert "does not select prices: skipped" not in text
