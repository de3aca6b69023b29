"""``crystalloop dashboard``: the live lab dashboard of an experiment store, in the browser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def dashboard_command(
    store: Annotated[Path | None, typer.Option(
        "--store", "-s", help="Experiment store file (default: $CRYSTALLOOP_STORE or ./crystalloop.db).")] = None,
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on. Anything but 127.0.0.1/localhost requires an access token.")]
        = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port (0: any free port).")] = 8050,
    token: Annotated[str | None, typer.Option(
        "--token", help="Access token required on every request (generated and printed for a non-local "
                        "--host when not given).")] = None,
    poll_s: Annotated[float, typer.Option(
        "--poll-s", help="How often live pages check the store for new data, s.")] = 0.25,
) -> None:
    """Serve the read-only dashboard: runs, live run, campaign; new samples appear without reloading."""
    import logging
    import sys

    from crystalloop.dashboard import serve
    from crystalloop.errors import ConfigError, StoreNotFoundError
    from crystalloop.store import default_store_path

    path = Path(store or default_store_path()).expanduser()
    if path.is_dir():
        path = path / "crystalloop.db"
    if not path.exists():
        raise StoreNotFoundError(f"No experiment store at {path}; give --store FILE or create one with "
                                 f"`crystalloop simulate --store {path}`")
    if not (poll_s > 0 and poll_s <= 10):
        raise ConfigError(f"--poll-s must be in (0, 10] s, got {poll_s!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s dashboard %(levelname)s: %(message)s", "%H:%M:%S"))
    log = logging.getLogger("crystalloop.dashboard")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        serve(path, host=host, port=port, token=token, poll_s=poll_s, announce=lambda s: typer.echo(s))
    finally:
        log.removeHandler(handler)


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard_command)
