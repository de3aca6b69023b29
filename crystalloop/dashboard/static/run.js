/* Live run: charts from the downsampled series, then new samples over server-sent events. */
"use strict";
(function () {
  const cfg = JSON.parse(document.getElementById("cfg").textContent);
  const rid = cfg.run_id;
  const H = 3600;
  const charts = {
    temperature: {div: "chart-temperature", y: "temperature (°C)"},
    concentration: {div: "chart-concentration", y: "concentration (kg/kg)"},
    counts: {div: "chart-counts", y: "counts"},
    other: {div: "chart-other", y: "value"},
  };
  const colors = {T_ref_c: "#444", T_set_c: "#1f77b4", T_target_c: "#17becf", T_bath_c: "#9467bd",
                  T_jacket_c: "#ff7f0e", T_reactor_c: "#d62728", conc_kg_kg: "#2ca02c", csat_kg_kg: "#8c564b",
                  counts: "#2ca02c", image_counts: "#7f7f7f", transmissivity_pct: "#9467bd"};
  const state = {after: 0, eventAfter: cfg.event_after, imageAfter: 0, status: cfg.status,
                 where: {}, refT: [], refY: [], refName: null, latestImage: null, lastT: 0};

  function trace(name, s) {
    const tr = {x: s.t.map(v => v / H), y: s.y, name: s.label, type: "scatter", mode: "lines",
                line: {width: name === "T_ref_c" ? 1.2 : 1.6, dash: name === "T_ref_c" ? "dash" : "solid",
                       color: colors[name]}, meta: name};
    if (name === "transmissivity_pct") tr.yaxis = "y2";
    return tr;
  }

  async function drawSeries() {
    const s = await CL.json(`/api/runs/${rid}/series?points=${cfg.points}`);
    state.after = s.after;
    const groups = {temperature: [], concentration: [], counts: [], other: []};
    for (const [name, ch] of Object.entries(s.channels)) {
      groups[ch.group].push([name, ch]);
      state.lastT = Math.max(state.lastT, ch.t.length ? ch.t[ch.t.length - 1] : 0);
    }
    for (const [g, list] of Object.entries(groups)) {
      const c = charts[g];
      const data = list.map(([name, ch]) => trace(name, ch));
      list.forEach(([name], i) => { state.where[name] = [c.div, i]; });
      const extra = {yaxis: {title: {text: c.y}, gridcolor: "#e6ebf0", zeroline: false}};
      if (g === "counts") {
        extra.yaxis2 = {title: {text: "transmissivity (%)"}, overlaying: "y", side: "right", showgrid: false};
        extra.margin = {l: 58, r: 64, t: 10, b: 42};
      }
      if (g === "other") document.getElementById("panel-other").hidden = list.length === 0;
      if (g === "concentration") document.getElementById("solubility-note").hidden = list.some(([n, ch]) => ch.label === "solubility");
      if (g !== "other" || list.length) Plotly.newPlot(c.div, data, CL.layout(extra), CL.config);
    }
    const te = s.tracking_error;
    const ref = te ? te.reference : null;
    const refText = {recipe: "recipe setpoint", T_ref_c: "logged reference", T_set_c: "setpoint"}[ref] || "reference";
    // live points: the error against the logged reference (the recipe's setpoint as the runner logs it)
    state.refName = s.channels.T_ref_c ? "T_ref_c" : (s.channels.T_set_c ? "T_set_c" : null);
    if (state.refName) { state.refT = s.channels[state.refName].t.slice(); state.refY = s.channels[state.refName].y.slice(); }
    Plotly.newPlot("chart-error", [{x: te ? te.t.map(v => v / H) : [], y: te ? te.y : [], type: "scatter", mode: "lines",
                    name: "reactor − " + refText, line: {color: "#d62728", width: 1.4}}],
                   CL.layout({yaxis: {title: {text: "error (°C)"}, gridcolor: "#e6ebf0", zeroline: true}}), CL.config);
    document.getElementById("error-ref").textContent = te ? `(reactor − ${refText})` : "(no reactor or reference channel)";
    if (te) document.getElementById("tracking-summary").textContent =
      `RMS ${CL.fmt(te.rms_c)} °C, max |error| ${CL.fmt(te.max_abs_c)} °C (${cfg.run_id ? "controller " + (document.getElementById("run-controller").textContent) : ""})`;
    window.__dashboard.points = Object.fromEntries(Object.entries(s.channels).map(([k, v]) => [k, v.t.length]));
    window.__dashboard.raw = Object.fromEntries(Object.entries(s.channels).map(([k, v]) => [k, v.n]));
  }

  function refAt(t) {  // reference temperature at time t (linear between its samples)
    const T = state.refT, Y = state.refY;
    if (!T.length || t < T[0] || t > T[T.length - 1]) return null;
    let lo = 0, hi = T.length - 1;
    while (hi - lo > 1) { const m = (lo + hi) >> 1; if (T[m] <= t) lo = m; else hi = m; }
    if (T[hi] === T[lo]) return Y[hi];
    return Y[lo] + (Y[hi] - Y[lo]) * (t - T[lo]) / (T[hi] - T[lo]);
  }

  async function showImage(img) {
    state.latestImage = img.image_id;
    const el = document.getElementById("probe-image");
    document.getElementById("image-caption").textContent = `(image ${img.image_id} at ${CL.fmt(img.time_s / H, 4)} h)`;
    const info = await CL.json(`/api/images/${img.image_id}/psd`);
    if (state.latestImage !== img.image_id) return;
    const cap = document.getElementById("probe-empty");
    if (info.error) { cap.textContent = info.error; el.hidden = true; return; }
    el.src = `/api/images/${img.image_id}/overlay.jpg`;
    el.hidden = false;
    el.dataset.imageId = img.image_id;
    const bar = document.getElementById("scale-bar");
    bar.style.width = (100 * info.scale_bar_fraction) + "%";  // of the image's displayed width
    bar.querySelector("em").textContent = `${info.scale_bar_um} µm`;
    bar.hidden = false;
    const p = info.psd;
    cap.textContent = `${p.n_particles} particles kept · pixel ${info.pixel_size_um} µm · ${info.width_px}×${info.height_px} px`;
    document.getElementById("psd-stats").textContent = p.n_particles
      ? `x10,3 = ${CL.fmt(p.x10_um)} µm   x50,3 = ${CL.fmt(p.x50_um)} µm   x90,3 = ${CL.fmt(p.x90_um)} µm`
      : "no particle kept: no PSD";
    const marks = p.n_particles ? [["x10", p.x10_um, 0.1], ["x50", p.x50_um, 0.5], ["x90", p.x90_um, 0.9]] : [];
    Plotly.react("chart-psd", [
      {x: p.size_um, y: p.Q3, type: "scatter", mode: "lines", name: "Q3", line: {shape: "linear", color: "#1f6fb2"}},
      {x: marks.map(m => m[1]), y: marks.map(m => m[2]), text: marks.map(m => m[0]), type: "scatter",
       mode: "markers+text", textposition: "middle right", name: "x10/x50/x90", marker: {color: "#d62728", size: 8}},
    ], CL.layout({xaxis: {title: {text: "size (µm), ECD"}, type: "log", gridcolor: "#e6ebf0"},
                  yaxis: {title: {text: "Q3"}, range: [0, 1.02], gridcolor: "#e6ebf0"}, hovermode: "closest",
                  showlegend: false}), CL.config);
  }

  const picker = document.getElementById("image-select");
  state.images = [];
  function addImageOptions(images) {  // the picker follows the newest image unless an older one is chosen
    const follow = !picker.value || picker.value === "latest";
    for (const img of images) {
      state.images.push(img);
      const o = document.createElement("option");
      o.value = String(img.image_id);
      o.textContent = `${CL.fmt(img.time_s / H, 4)} h (image ${img.image_id})`;
      picker.insertBefore(o, picker.options[1] || null);
    }
    picker.hidden = state.images.length < 2;
    return follow;
  }
  picker.addEventListener("change", () => {
    const img = picker.value === "latest" ? state.images[state.images.length - 1]
                                          : state.images.find(i => String(i.image_id) === picker.value);
    if (img) showImage(img).catch(e => CL.banner(String(e.message || e)));
  });

  async function loadImages() {
    const r = await CL.json(`/api/runs/${rid}/images`);
    if (r.images.length) {
      state.imageAfter = Math.max(...r.images.map(i => i.image_id));
      addImageOptions(r.images);
      await showImage(r.images[r.images.length - 1]);
    }
  }

  function addEvents(events) {
    const body = document.querySelector("#events-table tbody");
    const none = body.querySelector("tr.none");
    if (none) none.remove();
    for (const e of events) {
      const tr = document.createElement("tr");
      tr.className = `level-${e.level}` + (["warning", "error", "critical"].includes(e.level) ? " alarm" : "");
      for (const text of [`${(e.time_s / H).toFixed(2)} h`, e.level, e.message]) {
        const td = document.createElement("td"); td.textContent = text; tr.appendChild(td);
      }
      tr.firstChild.className = "mono";
      body.prepend(tr);
    }
  }

  function setStatus(u) {
    const b = document.getElementById("run-status");
    b.textContent = u.status; b.className = `badge ${u.status}`;
    if (u.cqas && Object.keys(u.cqas).length) {
      const body = document.querySelector("#cqa-table tbody");
      body.innerHTML = "";
      for (const [k, v] of Object.entries(u.cqas)) {
        const tr = document.createElement("tr");
        const th = document.createElement("th"); th.textContent = k;
        const td = document.createElement("td"); td.className = "num"; td.textContent = CL.fmt(v, 4);
        tr.append(th, td); body.appendChild(tr);
      }
    }
  }

  function apply(u) {
    const newErr = {x: [], y: []};
    let n = 0;
    if (u.samples) {
      for (const [name, s] of Object.entries(u.samples)) {
        n += s.t.length;
        state.lastT = Math.max(state.lastT, s.t[s.t.length - 1]);
        if (name === state.refName) { state.refT.push(...s.t); state.refY.push(...s.y); }
        let w = state.where[name];
        if (!w) {  // a channel that appeared during the run
          const grp = ({T_: "temperature"})[name.slice(0, 2)] || (name.startsWith("conc") || name.startsWith("csat") ? "concentration" : (["counts", "image_counts", "transmissivity_pct"].includes(name) ? "counts" : "other"));
          const div = charts[grp].div;
          const el = document.getElementById(div);
          if (grp === "other") document.getElementById("panel-other").hidden = false;
          const idx = el.data ? el.data.length : 0;
          if (el.data) Plotly.addTraces(div, trace(name, {t: [], y: [], label: name}));
          else Plotly.newPlot(div, [trace(name, {t: [], y: [], label: name})], CL.layout({}), CL.config);
          w = state.where[name] = [div, idx];
        }
        Plotly.extendTraces(w[0], {x: [s.t.map(v => v / H)], y: [s.y]}, [w[1]]);
      }
      const r = u.samples.T_reactor_c;
      if (r) r.t.forEach((t, i) => { const ref = refAt(t); if (ref !== null) { newErr.x.push(t / H); newErr.y.push(r.y[i] - ref); } });
      if (newErr.x.length) Plotly.extendTraces("chart-error", {x: [newErr.x], y: [newErr.y]}, [0]);
      document.getElementById("run-time").textContent = (state.lastT / H).toFixed(2);
      if (cfg.batch_time_min) {
        const f = Math.min(1, state.lastT / 60 / cfg.batch_time_min);
        const bar = document.getElementById("progress-bar");
        if (bar) bar.style.width = (100 * f).toFixed(1) + "%";
        document.getElementById("progress-text").textContent = `${Math.round(100 * f)} %`;
      }
    }
    if (u.events) addEvents(u.events);
    if (u.images && u.images.length) {
      state.imageAfter = Math.max(state.imageAfter, ...u.images.map(i => i.image_id));
      if (addImageOptions(u.images)) showImage(u.images[u.images.length - 1]).catch(e => CL.banner(String(e.message || e)));
    }
    if (u.status) setStatus(u);
    window.__dashboard.updates.push({t: Date.now(), n, lastT: state.lastT, samples: u.samples || {}});
  }

  function stream() {
    const q = `after=${state.after}&event_after=${state.eventAfter}&image_after=${state.imageAfter}&status=${encodeURIComponent(state.status)}`;
    const es = new EventSource(`/api/runs/${rid}/stream?${q}`);
    es.addEventListener("update", ev => apply(JSON.parse(ev.data)));
    es.addEventListener("store-error", ev => { CL.banner(JSON.parse(ev.data).error); });
    es.onopen = () => { CL.live(true); CL.banner(""); };
    es.onerror = () => CL.live(false);
  }

  (async function main() {
    try {
      await drawSeries();
      window.__dashboard.ready = performance.now();
      stream();
      await loadImages();
      window.__dashboard.imageReady = performance.now();
    } catch (e) {
      window.__dashboard.errors.push(String(e.message || e));
      CL.banner(String(e.message || e));
    }
  })();
})();
