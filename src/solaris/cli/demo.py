"""`solaris demo`: the product at work in one command, before any provider account or LibreChat.

A newcomer should see a metered chat within a minute of cloning. This command prepares a SQLite
data directory through the operations the rest of the CLI uses (migrations, the default plan
with a small allowance, the demo user, an admin account; each change audited), then runs
`solaris dev-provider` and `solaris serve` as its children, the provider as the gateway's
upstream, and once both answer prints in SOLARIS_LANGUAGE what to try: the chat to paste, the
same call blocked with its buy link, the dashboard and the portal with their sign-in, and the
`librechat.yaml` snippet. Ctrl-C stops both and says where the data stays.

The allowance is the demo chat's prompt plus the provider's reply, counted as the gateway counts
them: the first call is served and spends it exactly, the same call again is blocked.
The demo's settings are its own: the shell's other SOLARIS_* variables are dropped (only
SOLARIS_LANGUAGE is kept), so a configured shell cannot change what the demo shows.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Annotated, Any

import typer

from solaris.cli._common import run_job
from solaris.clock import utcnow
from solaris.errors import SolarisError
from solaris.texts.demo import GUIDE, PURCHASE_CONTACT, STARTING, STOPPED

if TYPE_CHECKING:  # imported by the functions that use them (see _common)
    from solaris.cli.processes import Child
    from solaris.config import Settings
    from solaris.store.database import Database

__all__ = ["chat_command", "librechat_yaml", "register"]

DEMO_KEY = "sk-solaris-demo"  # LibreChat's service key in the demo; it listens on loopback only
DEMO_USER = "demo-user"
DEMO_EMAIL = "demo@example.com"
ADMIN_EMAIL = "admin@example.com"
DEMO_BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "stream": True,
    "messages": [{"role": "user", "content": "Hello, SOLARIS!"}],
}
REPLY_TOKENS = 16  # what the development provider answers
TOP_UP_TOKENS = 1000
PORTAL_LINK_TTL_S = 8 * 3600
STOP_TIMEOUT_S = 30.0  # both children; the gateway drains for SHUTDOWN_GRACE_S of it
SHUTDOWN_GRACE_S = 5
DATABASE_FILE = "solaris.db"
PASSWORD_FILE = "admin-password"

# The endpoint of the README's "Point LibreChat at it", with its values.
LIBRECHAT_YAML = Template("""\
endpoints:
  custom:
    - name: "SOLARIS"
      apiKey: "$api_key"
      baseURL: "$base_url/v1"
      models: { default: ["gpt-4o-mini", "gpt-4o"], fetch: true }
      headers:
        $user_header: "{{LIBRECHAT_USER_ID}}"
        $email_header: "{{LIBRECHAT_USER_EMAIL}}"
        $conversation_header: "{{LIBRECHAT_BODY_CONVERSATIONID}}"
      titleConvo: true
      titleModel: "gpt-4o-mini"
""")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    port: Annotated[int, typer.Option(min=1, max=65535, help="The gateway's port.")] = 8080,
    provider_port: Annotated[
        int, typer.Option(min=1, max=65535, help="The development provider's port.")
    ] = 9100,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Database and logs (default: a new temporary directory); reusable."),
    ] = None,
) -> None:
    """Run the gateway on SQLite with the development provider as its upstream, a demo user and
    an admin, and print what to try; Ctrl-C stops everything it started.

    Example: solaris demo
    Example: solaris demo --port 8081 --provider-port 9101 --data-dir ./.solaris-demo
    """
    from solaris.cli.processes import port_in_use, stop_all, wait_ready
    from solaris.links import login_url, sign_link

    if port == provider_port:
        raise SolarisError("--port and --provider-port must differ")
    for taken in (port, provider_port):
        if port_in_use(taken):
            raise SolarisError(f"port {taken} is in use: choose another (--port, --provider-port)")
    stopped = _stop_on_signals()
    data = (data_dir or Path(tempfile.mkdtemp(prefix="solaris-demo-"))).resolve()
    data.mkdir(parents=True, exist_ok=True)
    settings = _demo_settings(data, port, provider_port)
    language = settings.language
    typer.echo(STARTING[language].format(data_dir=data))
    password = _admin_password(data / PASSWORD_FILE)

    async def prepare(settings: Settings, database: Database) -> int:
        return await _prepare(settings, database, password)

    user_id = run_job(prepare)
    token = sign_link(settings.signing_key(), user_id, PORTAL_LINK_TTL_S, utcnow())
    children: list[Child] = []
    try:
        if not stopped():
            _start_children(children, data, port, provider_port)
            wait_ready(children, stopped)
        if not stopped():
            words = _guide_words(settings, data, password, login_url(_base(port), token))
            typer.echo("\n" + GUIDE[language].format(**words))
            _watch(children, stopped)
    finally:
        stop_all(children, STOP_TIMEOUT_S)
        typer.echo(
            "\n"
            + STOPPED[language].format(
                data_dir=data,
                database=data / DATABASE_FILE,
                database_url=shlex.quote(settings.database_url),
                solaris=_solaris(),
            )
        )


async def _prepare(settings: Settings, database: Database, password: str) -> int:
    """The demo's database: migrated, the default plan at the demo's allowance, the demo user
    and the admin; returns the user's id. A reused data directory keeps what it has."""
    from solaris.ledger.plans import Plans
    from solaris.operations.admins import Admins
    from solaris.operations.core import Operations
    from solaris.store.database import migrate

    await migrate(database)
    await Plans(database).sync_from_settings(settings, utcnow())
    user = await Operations.standalone(settings, database).users.ensure(DEMO_USER, DEMO_EMAIL)
    admins = Admins(database, utcnow)
    if await admins.find(ADMIN_EMAIL) is None:
        await admins.create(ADMIN_EMAIL, password)
    return user.id


def _demo_settings(data: Path, port: int, provider_port: int) -> Settings:
    """Put the demo's settings in this process's environment, which the children inherit, and
    read them back; of the shell's SOLARIS_* variables only the language stays."""
    from solaris.config import load_settings

    for name in [n for n in os.environ if n.startswith("SOLARIS_") and n != "SOLARIS_LANGUAGE"]:
        del os.environ[name]
    os.environ.update(
        SOLARIS_DATABASE_URL=f"sqlite:///{data / DATABASE_FILE}",
        SOLARIS_UPSTREAM_BASE_URL=f"http://127.0.0.1:{provider_port}/v1",
        SOLARIS_LIBRECHAT_KEYS=DEMO_KEY,
        SOLARIS_DEFAULT_ALLOWANCE_TOKENS=str(demo_allowance()),
        SOLARIS_PUBLIC_BASE_URL=_base(port),
        SOLARIS_HOST="127.0.0.1",
        SOLARIS_PORT=str(port),
        SOLARIS_SHUTDOWN_GRACE_S=str(SHUTDOWN_GRACE_S),
        SOLARIS_LOG_FORMAT="json",
    )
    language = load_settings().language
    contact = PURCHASE_CONTACT[language].format(user=DEMO_USER, tokens=TOP_UP_TOKENS)
    os.environ["SOLARIS_PURCHASE_CONTACT"] = contact
    return load_settings()


def demo_allowance() -> int:
    """One reply to the demo chat: its prompt as the gateway and the provider count it, plus
    the provider's reply."""
    from solaris.metering.estimate import chat_prompt_tokens

    return chat_prompt_tokens(DEMO_BODY) + REPLY_TOKENS


def _start_children(children: list[Child], data: Path, port: int, provider_port: int) -> None:
    """The provider, then the gateway, each added to `children` as soon as it runs; in their
    own process group, so a Ctrl-C reaches only the demo, which stops them in order."""
    from solaris.cli.processes import solaris_command, start

    provider = ["dev-provider", "--port", str(provider_port), "--reply-tokens", str(REPLY_TOKENS)]
    for name, argv, log, ready_url in (
        ("development provider", provider, "provider.log", _base(provider_port) + "/health"),
        ("gateway", ["serve"], "gateway.log", _base(port) + "/readyz"),
    ):
        children.append(start(name, solaris_command(*argv), data / log, ready_url, own_group=True))


def _watch(children: list[Child], stopped: Callable[[], bool]) -> None:
    """Until asked to stop; a child that dies on its own ends the demo with its log's end."""
    from solaris.cli.processes import POLL_INTERVAL_S

    while not stopped():
        for child in children:
            if child.exited():
                raise child.failure(f"exited with {child.process.returncode}")
        time.sleep(POLL_INTERVAL_S)


def _guide_words(settings: Settings, data: Path, password: str, portal_link: str) -> dict[str, Any]:
    base = settings.public_base_url
    grant = (
        f"SOLARIS_DATABASE_URL={shlex.quote(settings.database_url)} {_solaris()} "
        f"credits grant {DEMO_USER} {TOP_UP_TOKENS} --note demo"
    )
    return {
        "base_url": base,
        "data_dir": data,
        "provider_url": settings.upstream_base_url,
        "user": DEMO_USER,
        "allowance": demo_allowance(),
        "chat": chat_command(settings),
        "grant": grant,
        "admin_email": ADMIN_EMAIL,
        "password": password,
        "portal_link": portal_link,
        "link_hours": PORTAL_LINK_TTL_S // 3600,
        "librechat_yaml": librechat_yaml(settings, base, DEMO_KEY),
        "gateway_log": data / "gateway.log",
        "provider_log": data / "provider.log",
    }


def chat_command(settings: Settings) -> str:
    """The curl of a streamed chat for the demo user, as LibreChat sends it."""
    body = json.dumps(DEMO_BODY, ensure_ascii=False)
    parts = [
        f"curl -N {settings.public_base_url}/v1/chat/completions",
        f"-H 'Authorization: Bearer {DEMO_KEY}'",
        f"-H '{settings.user_id_header}: {DEMO_USER}'",
        f"-H '{settings.user_email_header}: {DEMO_EMAIL}'",
        "-H 'Content-Type: application/json'",
        f"-d '{body}'",
    ]
    return " \\\n  ".join(parts)


def librechat_yaml(settings: Settings, base_url: str, api_key: str) -> str:
    """The `librechat.yaml` endpoint that sends LibreChat's chats to `base_url`."""
    return LIBRECHAT_YAML.substitute(
        api_key=api_key,
        base_url=base_url,
        user_header=settings.user_id_header,
        email_header=settings.user_email_header,
        conversation_header=settings.conversation_id_header,
    )


def _admin_password(path: Path) -> str:
    """The admin's password, made once per data directory and kept there (mode 0600)."""
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(12)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(password + "\n")
    return password


def _stop_on_signals() -> Callable[[], bool]:
    """Ctrl-C, SIGTERM and a closed terminal ask the demo to stop; it stops its children first.
    The handler only records the request, so no step is cut halfway."""
    received: list[int] = []

    def record(signum: int, _frame: object) -> None:
        received.append(signum)

    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, record)
    return lambda: bool(received)


def _base(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _solaris() -> str:
    """How to run `solaris` from a shell: the script beside this interpreter, or `-m`."""
    script = Path(sys.executable).with_name("solaris")
    if script.exists():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m solaris"
