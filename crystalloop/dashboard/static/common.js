/* crystalloop dashboard: helpers shared by the pages (no external resources). */
"use strict";
const CL = {
  font: 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Liberation Sans", sans-serif',
  async json(url) {
    const r = await fetch(url, {credentials: "same-origin", cache: "no-store"});
    const body = await r.json().catch(() => ({error: `HTTP ${r.status} from ${url}`}));
    if (!r.ok || body.error) throw new Error(body.error || `HTTP ${r.status} from ${url}`);
    return body;
  },
  banner(text) {
    const b = document.getElementById("banner");
    if (!b) return;
    b.textContent = text || "";
    b.hidden = !text;
  },
  live(ok) {
    const l = document.getElementById("live");
    if (!l) return;
    l.hidden = false;
    l.textContent = ok ? "live" : "reconnecting";
    l.classList.toggle("stale", !ok);
  },
  layout(extra) {
    return Object.assign({
      margin: {l: 58, r: 20, t: 10, b: 42}, font: {family: CL.font, size: 12},
      legend: {orientation: "h", y: 1.02, yanchor: "bottom", x: 0}, hovermode: "x unified",
      paper_bgcolor: "#fff", plot_bgcolor: "#fff",
      xaxis: {title: {text: "time (h)"}, gridcolor: "#e6ebf0", zeroline: false},
      yaxis: {gridcolor: "#e6ebf0", zeroline: false},
    }, extra || {});
  },
  config: {responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"]},
  throttle(fn, ms) {  // run fn at most once per ms; a call during the wait runs once at its end
    let last = 0, timer = null;
    return function () {
      const wait = last + ms - Date.now();
      if (timer) return;
      timer = setTimeout(async () => { last = Date.now(); try { await fn(); } finally { timer = null; } }, Math.max(0, wait));
    };
  },
  fmt(v, d) {
    if (v === null || v === undefined || !isFinite(v)) return "-";
    return Number(v).toPrecision(d || 3);
  },
};
window.__dashboard = {ready: null, updates: [], errors: []};
