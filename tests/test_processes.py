"""How long a spawned server is waited for (solaris.cli.processes): as long as it works at
starting, so a starved child on a busy machine is not failed for being slow, while one that burns
its CPU budget without answering, hangs, or exits is failed at once, with its log's end."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from solaris.cli.processes import free_port, process_cpu_s, running, start, stop, wait_ready
from solaris.errors import SolarisError

SERVE = "import http.server as s; s.HTTPServer(('127.0.0.1', {port}), s.BaseHTTPRequestHandler)"


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_child_is_ready_when_its_url_answers_with_any_status(tmp_path: Path) -> None:
    port = free_port()
    code = SERVE.format(port=port) + ".serve_forever()"  # 501 to GET: an answer all the same
    child = start(
        "server", _python(code), tmp_path / "log", f"http://127.0.0.1:{port}/", ready_status=None
    )
    with running(child):
        assert not child.exited()
    assert child.exited()


def test_a_child_that_burns_its_cpu_budget_without_answering_has_failed(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    child = start(
        "burner",
        _python("print('warming up', flush=True)\nwhile True: pass"),
        tmp_path / "log",
        url,
        ready_cpu_s_max=0.5,
    )
    try:
        with pytest.raises(
            SolarisError, match=r"the burner used .* CPU-seconds without answering"
        ) as failure:
            wait_ready([child], wall_s_max=60)
        assert "warming up" in str(failure.value)
        assert process_cpu_s(child.pid) > 0.5
    finally:
        stop(child.process)


def test_a_child_that_hangs_without_using_a_cpu_meets_the_wall_clock_ceiling(
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    child = start("sleeper", _python("import time; time.sleep(60)"), tmp_path / "log", url)
    started = time.monotonic()
    try:
        with pytest.raises(SolarisError, match=r"the sleeper was not ready at .* in 1 s"):
            wait_ready([child], wall_s_max=1)
        assert time.monotonic() - started < 10
    finally:
        stop(child.process)


def test_a_child_that_exits_while_awaited_fails_at_once_with_its_log(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    child = start("quitter", _python("import sys; sys.exit('no database')"), tmp_path / "log", url)
    with pytest.raises(
        SolarisError, match=r"(?s)the quitter exited with 1 while starting.*no database"
    ):
        wait_ready([child])
