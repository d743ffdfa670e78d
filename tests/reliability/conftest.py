"""The fault tests' count lines: printed by each test, and repeated together at the
end of the run, where they show whatever pytest does with captured output."""

from __future__ import annotations

import pytest

from .support import Counts

REPORTS = pytest.StashKey[list[str]]()


@pytest.fixture
def report(request):
    """``report("outage 30 s", Counts(...), ...)``: one line for one fault."""

    def emit(fault: str, *counts: Counts) -> str:
        line = f"{fault}: " + "; ".join(str(count) for count in counts)
        print(line)
        request.config.stash.setdefault(REPORTS, []).append(line)
        return line

    return emit


def pytest_terminal_summary(terminalreporter, config):
    lines = config.stash.get(REPORTS, [])
    if lines:
        terminalreporter.section("reliability counts")
        for line in lines:
            terminalreporter.write_line(line)
