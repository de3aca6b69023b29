"""The dashboard's web application (Starlette): pages, JSON API, live streams, access token.

Pages are rendered on the server (Jinja2) so they show the facts without JavaScript; the
charts are drawn in the browser by the shipped Plotly.js from the JSON API, and a live run
receives its new samples over server-sent events (``/api/runs/{id}/stream``) within a
fraction of a second of their commit (the stream polls SQLite's ``data_version``, which costs
one page read while nothing changes).
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import logging
import math
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from crystalloop.dashboard._campaign import campaign_view, list_campaigns
from crystalloop.dashboard._downsample import DEFAULT_POINTS
from crystalloop.dashboard._images import analyze_stored_image, scale_bar
from crystalloop.dashboard._reader import ALARM_LEVELS, StoreReader, channel_group
from crystalloop.errors import CrystalloopError, ImageError, StoreError

__all__ = ["create_app", "TOKEN_COOKIE", "SECURITY_HEADERS"]

log = logging.getLogger("crystalloop.dashboard")

#: cookie that carries the access token after the first request with ``?token=``
TOKEN_COOKIE = "crystalloop_dashboard_token"
_STATIC = Path(__file__).parent / "static"


class _NotFound(Exception):
    """A page or record that does not exist (rendered as a 404 page, not raised to callers)."""


def _clean(x: Any) -> Any:
    """JSON-safe copy: NaN/inf become null, numpy scalars plain numbers."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        return _clean(x.item())
    return x


def _json(data: Any, status: int = 200) -> Response:
    body = json.dumps(_clean(data), allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    return Response(body, status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


def _int(value: str, what: str) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise _NotFound(f"{what} {value!r} is not a number; expected a whole number such as 1") from None
    if v < 0:
        raise _NotFound(f"{what} {value!r} is negative; expected a whole number such as 1")
    return v


class _TokenGate:
    """ASGI middleware: every request must carry the token (query ``token=``, ``Authorization:
    Bearer``, or the cookie set after the first request that gave it in the query)."""

    def __init__(self, app: Any, token: str, render_error: Any) -> None:
        self.app, self.token, self.render_error = app, token.encode(), render_error

    def _given(self, scope: dict) -> tuple[bytes | None, bool]:
        q = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in q:
            return q["token"][-1].encode(), True
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"")
        if auth.lower().startswith(b"bearer "):
            return auth[7:].strip(), False
        cookie = SimpleCookie(headers.get(b"cookie", b"").decode("latin-1"))
        if TOKEN_COOKIE in cookie:
            return cookie[TOKEN_COOKIE].value.encode(), False
        return None, False

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given, from_query = self._given(scope)
        if given is None or not hmac.compare_digest(given, self.token):
            why = "no access token" if given is None else "a wrong access token"
            client = (scope.get("client") or ("?", 0))[0]
            log.warning("refused %s %s from %s: %s", scope.get("method"), scope.get("path"), client, why)
            msg = (f"This dashboard requires its access token and the request had {why}. Open the URL that "
                   f"`crystalloop dashboard` printed (it ends in ?token=...), or send the header "
                   f"'Authorization: Bearer TOKEN'.")
            resp = self.render_error(scope.get("path", ""), 401, "Access token required", msg)
            await resp(scope, receive, send)
            return
        if not from_query:
            await self.app(scope, receive, send)
            return
        cookie = f"{TOKEN_COOKIE}={self.token.decode()}; Path=/; HttpOnly; SameSite=Strict".encode()

        async def send_with_cookie(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


#: sent with every response: only this server's own files run, nothing is fetched elsewhere
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                 b"img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; "
                                 b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class _Headers:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _HostGate:
    """ASGI middleware: only the listed ``Host`` names (DNS-rebinding guard for a local server)."""

    def __init__(self, app: Any, allowed: list[str], render_error: Any) -> None:
        self.app, self.allowed, self.render_error = app, {h.lower() for h in allowed}, render_error

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raw = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
            name = raw.rsplit(":", 1)[0] if raw.count(":") == 1 or raw.startswith("[") else raw
            if name not in self.allowed:
                log.warning("refused %s %s: Host %r is not one of %s", scope.get("method"), scope.get("path"), raw,
                            sorted(self.allowed))
                msg = (f"Host {raw!r} is not accepted: this dashboard serves this machine only; open it as "
                       f"http://127.0.0.1 or http://localhost with its port, or start it with --host (and a token) "
                       f"to serve the network")
                await self.render_error(scope.get("path", ""), 400, "Host not accepted", msg)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(store: str | Path, *, token: str | None = None, poll_s: float = 0.25,
               points: int = DEFAULT_POINTS, allowed_hosts: list[str] | None = None) -> Starlette:
    """The dashboard as an ASGI application (serve it with uvicorn, or use :func:`serve`).

    Parameters
    ----------
    store : str or Path
        Experiment store file, read-only. It need not be valid when the app starts: a
        missing, foreign or corrupt store gives a clear error page on each request (and a
        log line) while the server keeps serving.
    token : str, optional
        Access token required on every request (query ``?token=``, ``Authorization: Bearer``
        header, or the cookie set by the first request that gave it).
    poll_s : float
        How often a live stream checks the store for new data, s.
    points : int
        Points per channel sent for a whole run (server-side downsampling keeps extremes).
    allowed_hosts : list of str, optional
        Accepted ``Host`` headers (e.g. ``["127.0.0.1", "localhost"]``): a page of another
        site that re-points its own name at 127.0.0.1 (DNS rebinding) is refused. None: any.

    Returns
    -------
    starlette.applications.Starlette
        Read-only: only GET and HEAD are routed.
    """
    import jinja2

    reader = StoreReader(store)
    env = jinja2.Environment(loader=jinja2.PackageLoader("crystalloop.dashboard", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    env.filters["num"] = _fmt_num
    env.filters["pct"] = lambda v: "-" if v is None else f"{100 * v:.0f} %"
    from crystalloop import __version__

    base_ctx = {"store_path": str(reader.path), "version": __version__}

    def page(template: str, http_status: int = 200, **ctx: Any) -> HTMLResponse:
        body = env.get_template(template).render(**base_ctx, **ctx)
        return HTMLResponse(body, status_code=http_status, headers={"Cache-Control": "no-store"})

    def render_error(path: str, code: int, title: str, message: str) -> Response:
        if path.startswith("/api/"):
            return _json({"error": message, "status": code}, code)
        try:
            return page("error.html", code, title=title, message=message, code=code)
        except Exception as e:  # noqa: BLE001 - the error page itself must never fail
            log.error("error page for %s could not be rendered: %s", path, e)
            text = html.escape(f"{title}: {message}")
            return HTMLResponse(f"<!doctype html><title>{html.escape(title)}</title><p>{text}</p>", status_code=code)

    # ---- pages ----------------------------------------------------------------------------

    async def runs_page(request: Request) -> Response:
        kind = request.query_params.get("kind") or None
        status = request.query_params.get("status") or None
        if status is not None and status not in reader.statuses():
            raise _NotFound(f"status {status!r} is not a run status; expected one of {', '.join(reader.statuses())}")
        runs = await run_in_threadpool(reader.runs, kind=kind, status=status)
        kinds = await run_in_threadpool(reader.kinds)
        camps = await run_in_threadpool(list_campaigns, reader)
        return page("runs.html", runs=runs, kinds=kinds, statuses=reader.statuses(), kind=kind, status=status,
                    campaigns=camps, alarm_levels=ALARM_LEVELS)

    async def run_page(request: Request) -> Response:
        rid = _int(request.path_params["run_id"], "run id")
        rec = await run_in_threadpool(reader.run, rid)
        if rec is None:
            raise _NotFound(await run_in_threadpool(_no_run_text, reader, rid))
        events = await run_in_threadpool(reader.events, rid)
        n = _int(request.query_params.get("points", str(points)), "points")  # ?points=N: other resolution
        if n < 4:
            raise _NotFound(f"points {n} is too small; expected at least 4 points per channel")
        return page("run.html", run=rec, events=events, alarm_levels=ALARM_LEVELS, points=n)

    async def campaigns_page(request: Request) -> Response:
        camps = await run_in_threadpool(list_campaigns, reader)
        return page("campaigns.html", campaigns=camps)

    async def campaign_page(request: Request) -> Response:
        cid = _int(request.path_params["cid"], "campaign number")
        view = await run_in_threadpool(campaign_view, reader, cid)
        if view is None:
            n = len(await run_in_threadpool(list_campaigns, reader))
            raise _NotFound(f"Campaign {cid} not found in experiment store {reader.path} "
                            f"({f'it has campaigns 1..{n}' if n else 'it has no campaign runs'})")
        return page("campaign.html", c=view)

    # ---- JSON API -------------------------------------------------------------------------

    async def api_runs(request: Request) -> Response:
        kind = request.query_params.get("kind") or None
        status = request.query_params.get("status") or None
        return _json({"runs": await run_in_threadpool(reader.runs, kind=kind, status=status)})

    async def api_run(request: Request) -> Response:
        rid = _int(request.path_params["run_id"], "run id")
        rec = await run_in_threadpool(reader.run, rid)
        if rec is None:
            raise _NotFound(await run_in_threadpool(_no_run_text, reader, rid))
        return _json(rec)

    async def api_series(request: Request) -> Response:
        rid = _int(request.path_params["run_id"], "run id")
        n = _int(request.query_params.get("points", str(points)), "points")
        if n < 4:
            raise _NotFound(f"points {n} is too small; expected at least 4 points per channel")
        if await run_in_threadpool(reader.run, rid) is None:
            raise _NotFound(await run_in_threadpool(_no_run_text, reader, rid))
        return _json(await run_in_threadpool(lambda: reader.series(rid, n_out=n)))

    async def api_images(request: Request) -> Response:
        rid = _int(request.path_params["run_id"], "run id")
        if await run_in_threadpool(reader.run, rid) is None:
            raise _NotFound(await run_in_threadpool(_no_run_text, reader, rid))
        return _json({"images": await run_in_threadpool(reader.images, rid)})

    async def _image_record(request: Request) -> dict:
        iid = _int(request.path_params["image_id"], "image id")
        rec = await run_in_threadpool(reader.image, iid)
        if rec is None:
            raise _NotFound(f"Image {iid} not found in experiment store {reader.path}")
        return rec

    async def api_overlay(request: Request) -> Response:
        rec = await _image_record(request)
        res = await run_in_threadpool(analyze_stored_image, rec["path"], rec["pixel_size_um"])
        return Response(res.image, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    async def api_psd(request: Request) -> Response:
        rec = await _image_record(request)
        try:
            res = await run_in_threadpool(analyze_stored_image, rec["path"], rec["pixel_size_um"])
        except ImageError as e:
            log.warning("image %s of run %s: %s", rec["image_id"], rec["run_id"], e)
            return _json({**rec, "error": str(e)})
        bar_um, bar_frac = scale_bar(res.width_px, res.pixel_size_um)
        return _json({**rec, "width_px": res.width_px, "height_px": res.height_px, "psd": res.psd,
                      "scale_bar_um": bar_um, "scale_bar_fraction": bar_frac})

    async def api_campaign(request: Request) -> Response:
        cid = _int(request.path_params["cid"], "campaign number")
        view = await run_in_threadpool(campaign_view, reader, cid)
        if view is None:
            raise _NotFound(f"Campaign {cid} not found in experiment store {reader.path}")
        return _json(view)

    # ---- live streams -----------------------------------------------------------------------

    async def run_stream(request: Request) -> Response:
        from sse_starlette import EventSourceResponse

        rid = _int(request.path_params["run_id"], "run id")
        q = request.query_params
        state = {"after": _int(q.get("after", "0"), "after"), "event_after": _int(q.get("event_after", "0"), "event_after"),
                 "image_after": _int(q.get("image_after", "0"), "image_after"), "status": q.get("status")}
        last_id = request.headers.get("last-event-id")
        if last_id:  # a reconnecting EventSource resumes where it stopped
            try:
                a, e, i = (int(x) for x in last_id.split(":"))
                state.update(after=a, event_after=e, image_after=i)
            except ValueError:
                pass
        rec0 = await run_in_threadpool(reader.run, rid)
        if rec0 is None:
            raise _NotFound(await run_in_threadpool(_no_run_text, reader, rid))
        state["conc"] = any(channel_group(ch)[0] == "concentration" for ch in rec0.get("channels", []))
        sol = await run_in_threadpool(reader.solubility, rid)

        def poll(conn: Any) -> dict | None:
            samples, after = reader.increment(conn, rid, state["after"])
            state["conc"] = state["conc"] or any(channel_group(ch)[0] == "concentration" for ch in samples)
            if sol is not None and state["conc"] and "T_reactor_c" in samples and "csat_kg_kg" not in samples:
                tr = samples["T_reactor_c"]
                samples["csat_kg_kg"] = {"t": list(tr["t"]), "y": [sol(v) for v in tr["y"]]}
            events = reader.events(rid, after_id=state["event_after"], conn=conn)
            images = reader.images(rid, after_id=state["image_after"], conn=conn)
            status, reason = reader.status(conn, rid)
            out: dict[str, Any] = {}
            if samples:
                out["samples"] = samples
            if events:
                out["events"] = events
                state["event_after"] = events[-1]["event_id"]
            if images:
                out["images"] = images
                state["image_after"] = max(i["image_id"] for i in images)
            if status != state["status"]:
                out.update(status=status, reason=reason, cqas=reader.cqas(rid, conn))
                state["status"] = status
            state["after"] = after
            return out or None

        async def stream():
            conn = None
            try:
                conn = await run_in_threadpool(reader.open)
                version = None
                while not request.app.state.stopping:
                    v = await run_in_threadpool(reader.data_version, conn)
                    if v != version:
                        version = v
                        upd = await run_in_threadpool(poll, conn)
                        if upd is not None:
                            yield {"event": "update", "data": json.dumps(_clean(upd), allow_nan=False),
                                   "id": f"{state['after']}:{state['event_after']}:{state['image_after']}"}
                    await asyncio.sleep(poll_s)
            except CrystalloopError as e:
                log.error("live stream of run %s: %s", rid, e)
                yield {"event": "store-error", "data": json.dumps({"error": str(e)})}
            finally:
                if conn is not None:
                    conn.close()

        return EventSourceResponse(stream(), ping=10, headers={"Cache-Control": "no-store"})

    async def store_stream(request: Request) -> Response:
        """One ``changed`` event whenever anything is committed to the store (the runs list refreshes)."""
        from sse_starlette import EventSourceResponse

        async def stream():
            conn = None
            try:
                conn = await run_in_threadpool(reader.open)
                version = await run_in_threadpool(reader.data_version, conn)
                while not request.app.state.stopping:
                    await asyncio.sleep(max(poll_s, 0.5))
                    v = await run_in_threadpool(reader.data_version, conn)
                    if v != version:
                        version = v
                        yield {"event": "changed", "data": "{}"}
            except CrystalloopError as e:
                log.error("store watch: %s", e)
                yield {"event": "store-error", "data": json.dumps({"error": str(e)})}
            finally:
                if conn is not None:
                    conn.close()

        return EventSourceResponse(stream(), ping=10, headers={"Cache-Control": "no-store"})

    async def root(request: Request) -> Response:
        return RedirectResponse("/runs", status_code=307)

    # ---- errors -----------------------------------------------------------------------------

    async def on_not_found(request: Request, exc: Exception) -> Response:
        msg = str(exc)
        log.warning("%s %s: %s", request.method, request.url.path, msg)
        return render_error(request.url.path, 404, "Not found", msg)

    async def on_http(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 500)
        if code == 405:
            msg = (f"{request.method} is not allowed: the dashboard only shows the store (GET); it does not "
                   f"start, stop or change runs")
        elif code == 404:
            msg = f"No page at {request.url.path}; the pages are /runs, /runs/ID, /campaigns and /campaigns/N"
        else:
            msg = str(getattr(exc, "detail", exc))
        log.warning("%s %s: %s", request.method, request.url.path, msg)
        return render_error(request.url.path, code, "Not available", msg)

    async def on_store(request: Request, exc: Exception) -> Response:
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return render_error(request.url.path, 503, "The experiment store cannot be read", str(exc))

    async def on_crystalloop(request: Request, exc: Exception) -> Response:
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return render_error(request.url.path, 422, "Cannot show this", str(exc))

    async def on_other(request: Request, exc: Exception) -> Response:
        log.error("%s %s: internal error %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        log.debug("traceback", exc_info=exc)
        return render_error(request.url.path, 500, "Internal error",
                            f"The dashboard failed to show {request.url.path}: {type(exc).__name__}: {exc}. "
                            f"The server keeps running; the log has the details.")

    get = ["GET"]
    routes = [
        Route("/", root, methods=get),
        Route("/runs", runs_page, methods=get),
        Route("/runs/{run_id}", run_page, methods=get),
        Route("/campaigns", campaigns_page, methods=get),
        Route("/campaigns/{cid}", campaign_page, methods=get),
        Route("/api/runs", api_runs, methods=get),
        Route("/api/runs/{run_id}", api_run, methods=get),
        Route("/api/runs/{run_id}/series", api_series, methods=get),
        Route("/api/runs/{run_id}/images", api_images, methods=get),
        Route("/api/runs/{run_id}/stream", run_stream, methods=get),
        Route("/api/store/stream", store_stream, methods=get),
        Route("/api/images/{image_id}/overlay.jpg", api_overlay, methods=get),
        Route("/api/images/{image_id}/psd", api_psd, methods=get),
        Route("/api/campaigns/{cid}", api_campaign, methods=get),
        Mount("/static", app=StaticFiles(directory=_STATIC), name="static"),
    ]
    middleware = [Middleware(_Headers), Middleware(GZipMiddleware, minimum_size=2048)]
    if allowed_hosts:
        middleware.insert(1, Middleware(_HostGate, allowed=allowed_hosts, render_error=render_error))
    if token:
        middleware.insert(2 if allowed_hosts else 1, Middleware(_TokenGate, token=token, render_error=render_error))
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={
        _NotFound: on_not_found, HTTPException: on_http, StoreError: on_store, ImageError: on_crystalloop,
        CrystalloopError: on_crystalloop, Exception: on_other})
    app.state.stopping = False
    app.state.reader = reader
    return app


def _no_run_text(reader: StoreReader, rid: int) -> str:
    lo, hi, n = reader.run_ids()
    have = f"it has runs {lo}..{hi}" if n else "it has no runs"
    return f"Run {rid} not found in experiment store {reader.path} ({have})"


def _fmt_num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return "-"
    return f"{f:.{digits}g}" if abs(f) < 10 ** digits else f"{f:.0f}"
