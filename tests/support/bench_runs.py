"""Running `python -m bench` from a test as a user runs it, in a process group of its own."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_in_own_group(argv: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run the bench in a process group of its own. On timeout the whole group gets SIGTERM (the
    bench's serve, worker and receiver processes stop cleanly, embedded PostgreSQL included), then
    SIGKILL; killing only the bench would leave its servers running."""
    with subprocess.Popen(
        argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
            raise
        return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
