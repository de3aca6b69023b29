"""Serving the dashboard: :func:`serve` (the CLI, blocking) and :class:`DashboardServer` (a thread).

The server binds 127.0.0.1 unless told otherwise. Bound to any other address it refuses to
run without an access token: one is generated (``secrets.token_urlsafe``) when none is given,
and the URL to open, token included, is returned/printed.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

from crystalloop.dashboard._app import create_app
from crystalloop.dashboard._downsample import DEFAULT_POINTS
from crystalloop.errors import ConfigError

__all__ = ["DashboardServer", "serve", "is_loopback", "access_token", "DEFAULT_HOST", "DEFAULT_PORT"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050
log = logging.getLogger("crystalloop.dashboard")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (127.0.0.0/8, ::1, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port must be a whole number from 0 to 65535 (0: any free port), got {port!r}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"host {host!r} cannot be resolved to an address to listen on: {e.strerror}") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e} (is another dashboard running? "
                          f"choose another --port)") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def access_token(host: str, token: str | None) -> str | None:
    """The token the server will require: ``token`` if given, a new one for a non-loopback host, else None.

    Raises
    ------
    ConfigError
        ``token`` shorter than 8 characters, with spaces or unprintable characters.
    """
    if token is not None:
        if not isinstance(token, str) or len(token) < 8 or not token.isprintable() or " " in token:
            got = f"a string of {len(token)} characters" if isinstance(token, str) else repr(token)
            raise ConfigError(f"token must be a printable string of at least 8 characters without spaces, got {got}")
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(18)


def _warm_up() -> None:
    """Import what the first requests need (simulator for solubility curves, campaign and
    design code, the vision pipeline) in the background, so the first page is not the slow one."""
    import importlib

    for name in ("crystalloop.hardware.sim", "crystalloop.campaign", "crystalloop.digital_twin.design",
                 "crystalloop.vision", "crystalloop.digital_twin.doe"):
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - the page that needs it will report the error
            log.warning("could not import %s in advance: %s", name, e)


class DashboardServer:
    """The dashboard served from a background thread (tests, notebooks, benchmarks).

    Parameters
    ----------
    store : str or Path
        Experiment store, read-only.
    host : str
        Address to listen on; default 127.0.0.1 (this machine only).
    port : int
        TCP port; 0 picks a free one (see :attr:`port` after :meth:`start`).
    token : str, optional
        Access token; required (generated if None) when ``host`` is not a loopback address.
    poll_s, points
        See :func:`~crystalloop.dashboard.create_app`.

    Examples
    --------
    >>> import tempfile, pathlib, urllib.request
    >>> from crystalloop.store import ExperimentStore
    >>> db = pathlib.Path(tempfile.mkdtemp()) / "lab.db"
    >>> ExperimentStore(db).close()
    >>> with DashboardServer(db, port=0) as srv:
    ...     page = urllib.request.urlopen(srv.url + "/runs").read().decode()
    >>> "no runs" in page
    True
    """

    def __init__(self, store: str | Path, *, host: str = DEFAULT_HOST, port: int = 0, token: str | None = None,
                 poll_s: float = 0.25, points: int = DEFAULT_POINTS) -> None:
        token = access_token(host, token)
        self.store, self.host, self.token = Path(store), host, token
        # on this machine only: refuse Host names other than the loopback ones (DNS rebinding);
        # on a network the token guards every request
        hosts = sorted({"127.0.0.1", "localhost", "::1", "[::1]", host}) if is_loopback(host) else None
        self.app = create_app(self.store, token=token, poll_s=poll_s, points=points, allowed_hosts=hosts)
        self._sock = _bind(host, port)
        self.port = int(self._sock.getsockname()[1])
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL to open (with ``?token=`` when a token is required, for the first page)."""
        host = self.host
        if host in ("0.0.0.0", "::", ""):  # every interface: name the machine, not the wildcard
            host = socket.gethostname()
        h = f"[{host}]" if ":" in host else host
        return f"http://{h}:{self.port}"

    @property
    def open_url(self) -> str:
        """The runs page URL to give a person: with the token when one is required."""
        return f"{self.url}/runs" + (f"?token={self.token}" if self.token else "")

    def _config(self) -> Any:
        import uvicorn

        return uvicorn.Config(self.app, log_level="warning", access_log=False, timeout_graceful_shutdown=2,
                              lifespan="off")

    def start(self) -> DashboardServer:
        """Serve in a daemon thread; return when the server accepts connections."""
        import uvicorn

        threading.Thread(target=_warm_up, name="crystalloop-dashboard-warm-up", daemon=True).start()
        self._server = uvicorn.Server(self._config())
        self._server.install_signal_handlers = lambda: None  # not the main thread
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="crystalloop-dashboard", daemon=True)
        self._thread.start()
        t0 = time.monotonic()
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() - t0 > 20:
                raise ConfigError(f"the dashboard on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Close live streams, stop the server and release the port."""
        self.app.state.stopping = True
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(store: str | Path, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: str | None = None,
          poll_s: float = 0.25, points: int = DEFAULT_POINTS, announce: Any = print) -> None:
    """Serve the dashboard until interrupted (Ctrl-C): ``crystalloop dashboard``.

    Parameters
    ----------
    store : str or Path
        Experiment store, read-only.
    host, port : str, int
        Where to listen (default 127.0.0.1:8050). Any non-loopback host requires a token.
    token : str, optional
        Access token; generated and announced when ``host`` is not a loopback address.
    poll_s, points
        See :func:`~crystalloop.dashboard.create_app`.
    announce : callable(str)
        Receives the line with the URL to open.
    """
    import uvicorn

    srv = DashboardServer(store, host=host, port=port, token=token, poll_s=poll_s, points=points)
    announce(f"crystalloop dashboard of {srv.store} on {srv.open_url} (read-only; Ctrl-C to stop)")
    if srv.token and token is None:
        announce(f"access token (generated, required on every request): {srv.token}")
    threading.Thread(target=_warm_up, name="crystalloop-dashboard-warm-up", daemon=True).start()
    server = uvicorn.Server(srv._config())
    orig = server.handle_exit

    def handle_exit(sig: int, frame: Any) -> None:
        srv.app.state.stopping = True  # end the live streams so the shutdown does not wait for them
        orig(sig, frame)

    server.handle_exit = handle_exit  # type: ignore[method-assign]
    try:
        server.run(sockets=[srv._sock])
    finally:
        srv._sock.close()
