"""The first run: `solaris demo` followed as a newcomer would (its printed curl served, then
blocked with the buy link; the portal and dashboard sign-ins; Ctrl-C), the README's quick start
held to what the demo prints, and `make run` without an upstream saying what is missing."""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from solaris.cli.demo import demo as demo_command
from solaris.cli.demo import librechat_yaml
from solaris.cli.processes import READY_WALL_S_MAX
from solaris.config import Settings, missing_setup
from solaris.texts.chat import CHAT_TEXT, chat_notice
from tests.servers import free_port, spawn, wait_for

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
GUIDE_TIMEOUT_S = READY_WALL_S_MAX + 60.0  # the demo gives up on its children first, saying why
STOP_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 60.0


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    output_path: Path
    data_dir: Path
    port: int
    provider_port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.output_path.read_text()

    def commands(self) -> list[str]:
        """The shell commands the guide prints, each with its backslash continuations."""
        commands: list[str] = []
        current: list[str] | None = None
        for line in self.output().splitlines():
            if current is None and not line.startswith(("curl ", "SOLARIS_DATABASE_URL=")):
                continue
            current = [*(current or []), line]
            if not line.endswith("\\"):
                commands.append("\n".join(current))
                current = None
        return commands

    def chat_command(self) -> str:
        [chat] = [command for command in self.commands() if command.startswith("curl ")]
        return chat


def _two_free_ports() -> tuple[int, int]:
    while (ports := (free_port(), free_port()))[0] == ports[1]:
        pass
    return ports


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`solaris demo` in English on free ports, running until its guide is printed."""
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed: the demo's guide is made of curl commands")
    port, provider_port = _two_free_ports()
    root = tmp_path_factory.mktemp("demo")
    output_path = root / "demo.out"
    argv = ["demo", "--port", str(port), "--provider-port", str(provider_port)]
    with output_path.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "solaris", *argv, "--data-dir", str(root / "data")],
            env={**os.environ, "SOLARIS_LANGUAGE": "en"},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    running = Demo(process, output_path, root / "data", port, provider_port)
    try:
        wait_for(
            "the demo's guide",
            lambda: "Ctrl-C" in running.output() or process.poll() is not None,
            GUIDE_TIMEOUT_S,
        )
        assert process.poll() is None, running.output()
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run_printed(command: str) -> subprocess.CompletedProcess[str]:
    """Run a printed command as a shell would: leading NAME=value words set its environment."""
    words = shlex.split(command.replace("\\\n", " "))
    env = dict(os.environ)
    while re.fullmatch(r"[A-Z_]+=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return subprocess.run(words, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


def streamed_text(body: str) -> str:
    """The assistant's text of an SSE chat stream, which must end with [DONE]."""
    events = [
        line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")
    ]
    assert events and events[-1] == "[DONE]", body
    chunks = [json.loads(event) for event in events[:-1]]
    return "".join(c["delta"].get("content") or "" for e in chunks for c in e["choices"])


def quick_start() -> str:
    text = README.read_text()
    start = text.index("\n## Quick start")
    return text[start : text.index("\n## ", start + 1)]


def _words(text: str) -> str:
    return " ".join(text.split())


def test_the_printed_chat_is_served_then_blocked_with_its_buy_link(demo: Demo) -> None:
    chat = demo.chat_command()
    served = run_printed(chat)
    assert served.returncode == 0, served.stderr
    reply = streamed_text(served.stdout)
    promised = re.search(r"\*(This is a deterministic reply[^*]+)\*", quick_start())
    assert promised is not None, "the quick start says what the reply reads"
    assert _words(promised.group(1)) in reply
    assert reply.endswith(chat_notice("en", 100, 0)), "the reply that spent the allowance says so"

    blocked = run_printed(chat)
    block = streamed_text(blocked.stdout)
    assert block.startswith(CHAT_TEXT["en"].split("\n")[0]), block
    link = re.search(r"\((http://\S+/portal/buy\?t=[^)\s]+)\)", block)
    assert link is not None and link.group(1).startswith(f"{demo.base_url}/portal/buy?t="), block
    purchase = httpx.get(link.group(1), follow_redirects=True, timeout=30)
    assert purchase.status_code == 200
    assert "solaris credits grant demo-user 1000" in purchase.text, "how a demo user gets credits"

    [grant] = [c for c in demo.commands() if c.startswith("SOLARIS_DATABASE_URL=")]
    granted = run_printed(grant)
    assert granted.returncode == 0 and "granted; balance 1000" in granted.stdout, granted.stderr
    assert "deterministic reply" in streamed_text(run_printed(chat).stdout), "served again"


def test_the_printed_portal_link_signs_the_demo_user_in(demo: Demo) -> None:
    found = re.search(r"(http://\S+/portal/login\?t=\S+)", demo.output())
    assert found is not None, demo.output()
    page = httpx.get(found.group(1), follow_redirects=True, timeout=30)
    assert page.status_code == 200
    assert page.url.path == "/portal" and "demo@example.com" in page.text


def test_the_printed_admin_sign_in_opens_the_dashboard(demo: Demo) -> None:
    found = re.search(
        rf"{demo.base_url}/admin, sign in as (\S+) with the password (\S+)", demo.output()
    )
    assert found is not None, demo.output()
    email, password = found.groups()
    with httpx.Client(base_url=demo.base_url, timeout=30) as http:
        form = http.get("/admin/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        fields = {"csrf": csrf.group(1), "email": email, "password": password, "next": "/admin"}
        overview = http.post("/admin/login", data=fields, follow_redirects=True)
    assert overview.status_code == 200 and overview.url.path == "/admin"


def test_the_readme_quick_start_is_what_the_demo_prints(demo: Demo) -> None:
    section = quick_start()
    blocks = [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL)]
    assert blocks[0] == "make demo"
    dry_run = subprocess.run(["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True)
    assert dry_run.returncode == 0 and "solaris demo" in dry_run.stdout, dry_run.stderr
    for target in set(re.findall(r"`make (\w+)`", section)):
        made = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert made.returncode == 0, f"`make {target}` in the quick start: {made.stderr}"
    # The README's curl is the printed one, at the default port.
    assert inspect.signature(demo_command).parameters["port"].default == 8080
    assert blocks[1].replace("http://127.0.0.1:8080", demo.base_url) == demo.chat_command()
    assert "http://127.0.0.1:8080/portal/buy?t=" in section
    headings = {_anchor(line[3:]) for line in README.read_text().splitlines() if line[:3] == "## "}
    assert set(re.findall(r"\]\(#([^)]+)\)", section)) <= headings


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_librechat_snippet_is_the_readmes_with_the_demos_values(demo: Demo) -> None:
    text = README.read_text()
    section = text[text.index("\n## Point LibreChat at it") :]
    [readme_yaml] = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)[:1]
    without_comments = "".join(
        re.sub(r"\s+#.*$", "", line) + "\n"
        for line in readme_yaml.splitlines()
        if not line.lstrip().startswith("#")  # an option shown commented out
    )
    settings = Settings()
    assert without_comments == librechat_yaml(
        settings, "http://solaris:8080", "${SOLARIS_LIBRECHAT_KEY}"
    )
    assert librechat_yaml(settings, demo.base_url, "sk-solaris-demo") in demo.output()


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return children


def test_ctrl_c_stops_everything_and_tells_where_the_data_is(demo: Demo) -> None:
    """Runs last: it stops the module's demo."""
    children = _children_of(demo.process.pid)
    assert len(children) == 2, "the development provider and the gateway"
    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(timeout=STOP_TIMEOUT_S) == 0, demo.output()
    assert f"Its data stays in {demo.data_dir}" in demo.output()
    assert (demo.data_dir / "solaris.db").is_file()
    assert [pid for pid in children if Path(f"/proc/{pid}").exists()] == []
    for port in (demo.port, demo.provider_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=5)


def test_make_run_without_an_upstream_says_what_is_missing_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("SOLARIS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SOLARIS_DATABASE_URL", f"sqlite:///{tmp_path}/run.db")
    migrated = subprocess.run(
        [sys.executable, "-m", "solaris", "migrate"], capture_output=True, text=True, timeout=60
    )
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    log_path = tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with spawn(["serve", "--port", str(port)], url + "/healthz", log_path=log_path):
        ready = httpx.get(url + "/readyz", timeout=30)
    first = json.loads(log_path.read_text().splitlines()[0])
    assert first["event"] == "setup_incomplete" and first["level"] == "warning"
    missing: dict[str, str] = first["missing"]
    assert set(missing) == {"SOLARIS_UPSTREAM_BASE_URL", "SOLARIS_LIBRECHAT_KEYS"}
    assert "`make demo`" in missing["SOLARIS_UPSTREAM_BASE_URL"]
    for words in missing.values():
        for section in re.findall(r'README\.md, section "([^"]+)"', words):
            assert f"\n## {section}\n" in README.read_text(), f"no README section {section!r}"
    answer = ready.json()
    assert answer["missing"]["SOLARIS_LIBRECHAT_KEYS"] == missing["SOLARIS_LIBRECHAT_KEYS"]
    if answer["checks"]["upstream"] != "ok":  # unless a LiteLLM proxy answers at its default
        assert ready.status_code == 503
        assert (
            answer["missing"]["SOLARIS_UPSTREAM_BASE_URL"] == missing["SOLARIS_UPSTREAM_BASE_URL"]
        )


def test_nothing_is_missing_once_an_upstream_and_a_librechat_key_are_set() -> None:
    settings = Settings(upstream_base_url="http://127.0.0.1:4000/v1", librechat_keys=["sk-lc"])
    assert missing_setup(settings) == {}
