"""A pytest-timeout that fires always fails its test.

pytest-timeout's signal method raises inside whatever code runs when the alarm comes; code that
swallows exceptions there (a `logging` handler, a broad `except BaseException`) can turn the
timeout into a pass. This plugin records that the alarm fired and fails the test whatever
happened after it. Loaded by tests/conftest.py; `-p tests.timeout_guard` loads it elsewhere.
"""

from __future__ import annotations

import signal
import threading

import pytest
import pytest_timeout

_FIRED = pytest.StashKey[float]()


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings) -> bool | None:
    """The signal method, remembering on the item that the alarm fired."""
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None  # pytest-timeout's own thread method ends the whole process: never a pass

    def handler(signum, frame) -> None:
        __tracebackhide__ = True
        item.stash[_FIRED] = settings.timeout
        pytest_timeout.timeout_sigalrm(item, settings)

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    return True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.passed and _FIRED in item.stash:
        report.outcome = "failed"
        report.longrepr = (f"Timeout >{item.stash[_FIRED]}s: pytest-timeout fired, but the code "
                           "under test swallowed its exception")
