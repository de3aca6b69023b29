/* Runs list: filters apply at once; the table refreshes whenever the store changes. */
"use strict";
(function () {
  const form = document.getElementById("filters");
  for (const sel of form.querySelectorAll("select")) sel.addEventListener("change", () => form.submit());
  let pending = false;
  async function refresh() {
    if (pending) return;
    pending = true;
    try {
      const r = await fetch(location.href, {credentials: "same-origin", cache: "no-store"});
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      const fresh = doc.getElementById("runs-block");
      if (r.ok && fresh) document.getElementById("runs-block").replaceWith(fresh);
      window.__dashboard.updates.push({t: Date.now()});
    } finally { pending = false; }
  }
  const es = new EventSource("/api/store/stream");
  es.addEventListener("changed", CL.throttle(refresh, 2000));
  es.addEventListener("store-error", ev => CL.banner(JSON.parse(ev.data).error));
  es.onopen = () => { CL.live(true); CL.banner(""); };
  es.onerror = () => CL.live(false);
  window.__dashboard.ready = performance.now();
})();
