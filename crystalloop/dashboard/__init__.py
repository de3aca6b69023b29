"""crystalloop.dashboard: the live lab dashboard, a read-only web view of an experiment store.

``crystalloop dashboard [--store DB] [--host 127.0.0.1] [--port 8050] [--token T]`` serves three
views in the browser: the runs list (status, recipe, backend, progress, CQAs, alarms), a live
run (temperatures, concentration vs solubility, counts and transmissivity, tracking error,
the latest probe image with its particle overlay, scale bar and PSD) and a campaign (measured
runs in objective space with the front after each round, hypervolume by round, predicted vs
measured per CQA, the round's recipes). New samples reach an open page within a second of
their commit, over server-sent events. Every asset ships in the package: no CDN, no web fonts.

* :func:`create_app` — the Starlette application (routes, JSON API, live streams, token gate);
* :func:`serve` — serve it until Ctrl-C; :class:`DashboardServer` — serve it from a thread;
* :class:`StoreReader` — the read-only queries (``mode=ro`` SQLite connections);
* :func:`downsample` — MinMaxLTTB downsampling that keeps every extreme;
* :func:`campaign_view`, :func:`list_campaigns` — the campaign view's data.
"""

from crystalloop.dashboard._app import TOKEN_COOKIE, create_app
from crystalloop.dashboard._campaign import campaign_view, list_campaigns
from crystalloop.dashboard._downsample import DEFAULT_POINTS, downsample
from crystalloop.dashboard._images import ImageAnalysis, analyze_stored_image, scale_bar
from crystalloop.dashboard._reader import ALARM_LEVELS, StoreReader, channel_group
from crystalloop.dashboard._serve import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DashboardServer,
    access_token,
    is_loopback,
    serve,
)

__all__ = [
    "create_app", "serve", "DashboardServer", "is_loopback", "access_token", "DEFAULT_HOST", "DEFAULT_PORT", "TOKEN_COOKIE",
    "StoreReader", "channel_group", "ALARM_LEVELS",
    "downsample", "DEFAULT_POINTS",
    "campaign_view", "list_campaigns",
    "ImageAnalysis", "analyze_stored_image", "scale_bar",
]
