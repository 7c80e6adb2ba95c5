"""A timeout that fires fails its test, even when the code under test swallows the exception."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SWALLOWING = textwrap.dedent('''
    import logging, time
    import pytest

    class Slow(logging.Handler):
        def emit(self, record):
            try:
                time.sleep(30)
            except BaseException:  # what a careless handler (or library) does
                pass

    @pytest.mark.timeout(1)
    def test_swallowed():
        log = logging.getLogger("swallow")
        log.addHandler(Slow())
        log.warning("slow")

    def test_quick():
        assert True
''')


def _run(tmp_path: Path, *plugins: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_inner.py").write_text(SWALLOWING)
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugins,
            "test_inner.py"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=120)


def test_a_swallowed_timeout_fails_the_test(tmp_path: Path) -> None:
    plain = _run(tmp_path)  # pytest-timeout alone: the swallowed timeout passes
    assert plain.returncode == 0, plain.stdout
    guarded = _run(tmp_path, "-p", "tests.timeout_guard")
    assert guarded.returncode == 1, guarded.stdout
    assert "1 failed, 1 passed" in guarded.stdout
    assert "swallowed its exception" in guarded.stdout
