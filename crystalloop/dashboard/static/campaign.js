/* Campaign: objective space with the measured front per round, hypervolume, parity per CQA. */
"use strict";
(function () {
  const palette = ["#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
  const color = r => palette[r % palette.length];
  const cid = JSON.parse(document.getElementById("cfg").textContent).campaign_id;

  function draw(c) {
    const objs = c.objectives;
    if (objs.length >= 2) {
      const [a, b] = objs;
      const rounds = [...new Set(c.points.map(p => p.round))].sort((x, y) => x - y);
      const data = rounds.map(r => {
        const pts = c.points.filter(p => p.round === r && p[a.name] !== null && p[b.name] !== null);
        return {x: pts.map(p => p[a.name]), y: pts.map(p => p[b.name]), text: pts.map(p => p.label),
                customdata: pts.map(p => p.run_id), type: "scatter",
                mode: "markers", name: r === 0 ? "starting DoE" : `round ${r} runs`,
                marker: {color: color(r), size: r === 0 ? 7 : 10, symbol: r === 0 ? "circle-open" : "circle"},
                hovertemplate: "%{text}<br>%{x:.4g}, %{y:.4g}" + (r === 0 ? "" : "<br>(click: open the run)") + "<extra></extra>"};
      });
      for (const f of c.fronts) {
        data.push({x: f.x, y: f.y, type: "scatter", mode: "lines", line: {shape: b.direction === "min" ? "hv" : "vh", color: color(f.round), width: 2, dash: f.round === 0 ? "dot" : "solid"},
                   name: f.round === 0 ? "front of the DoE" : `front after round ${f.round}`, hoverinfo: "skip"});
      }
      Plotly.react("chart-objectives", data, CL.layout({hovermode: "closest",
        xaxis: {title: {text: `${a.name} (${a.direction})`}, gridcolor: "#e6ebf0"},
        yaxis: {title: {text: `${b.name} (${b.direction})`}, gridcolor: "#e6ebf0"}}), CL.config);
    } else {
      document.getElementById("chart-objectives").textContent = "objectives unknown (no campaign.json)";
    }
    Plotly.react("chart-hv", [{x: c.hypervolume.map(h => h.round), y: c.hypervolume.map(h => h.hypervolume), type: "scatter",
      mode: "lines+markers", name: "hypervolume", marker: {size: 9}}], CL.layout({hovermode: "closest", showlegend: false,
      xaxis: {title: {text: "round (0 = starting DoE)"}, dtick: 1, gridcolor: "#e6ebf0"},
      yaxis: {title: {text: "hypervolume"}, gridcolor: "#e6ebf0"}}), CL.config);
    const box = document.getElementById("parity");
    box.innerHTML = "";
    if (!c.parity.length) box.textContent = "no predictions recorded yet (history.csv)";
    for (const p of c.parity) {
      const div = document.createElement("div");
      div.className = "chart"; div.id = `chart-parity-${p.cqa}`;
      box.appendChild(div);
      const ok = p.measured.map((m, i) => m !== null && p.predicted[i] !== null);
      const vals = p.measured.concat(p.predicted).filter(v => v !== null);
      const lo = Math.min(...vals), hi = Math.max(...vals), pad = 0.05 * (hi - lo || 1);
      Plotly.newPlot(div, [
        {x: p.measured.filter((_, i) => ok[i]), y: p.predicted.filter((_, i) => ok[i]), text: p.label.filter((_, i) => ok[i]),
         error_y: {type: "data", array: p.std.filter((_, i) => ok[i]), visible: true, color: "#9bb"}, type: "scatter", mode: "markers",
         marker: {size: 9, color: p.round.filter((_, i) => ok[i]).map(color)}, name: p.cqa,
         hovertemplate: "%{text}: measured %{x:.4g}, predicted %{y:.4g}<extra></extra>"},
        {x: [lo - pad, hi + pad], y: [lo - pad, hi + pad], type: "scatter", mode: "lines", line: {dash: "dot", color: "#888"}, name: "y = x", hoverinfo: "skip"},
      ], CL.layout({hovermode: "closest", showlegend: false, margin: {l: 58, r: 20, t: 24, b: 42},
        title: {text: `${p.cqa}: predicted ± std vs measured`, font: {size: 12}},
        xaxis: {title: {text: "measured"}, gridcolor: "#e6ebf0"}, yaxis: {title: {text: "predicted"}, gridcolor: "#e6ebf0"}}), CL.config);
    }
  }

  function plan(c) {  // the newest round's recipes and their status, refreshed with the store
    const body = document.querySelector("#next-round tbody");
    if (!body || !c.next_round) return;
    body.innerHTML = "";
    for (const r of c.next_round.recipes) {
      const tr = document.createElement("tr");
      const run = document.createElement("td");
      if (r.run_id) { const a = document.createElement("a"); a.href = `/runs/${r.run_id}`; a.textContent = r.label; run.appendChild(a); }
      else run.textContent = r.label;
      const st = document.createElement("td");
      const b = document.createElement("span"); b.className = `badge ${r.status}`; b.textContent = r.status; st.appendChild(b);
      const rec = document.createElement("td"); rec.className = "recipe"; rec.textContent = r.recipe;
      const pred = document.createElement("td");
      for (const [k, p] of Object.entries(r.predicted)) {
        const sp = document.createElement("span"); sp.className = "cqa";
        sp.textContent = `${k} ${CL.fmt(p.mean)} ± ${CL.fmt(p.std, 2)}`; pred.appendChild(sp);
      }
      tr.append(run, st, rec, pred);
      body.appendChild(tr);
    }
  }

  async function refresh() {
    const c = await CL.json(`/api/campaigns/${cid}`);
    draw(c);
    plan(c);
    window.__dashboard.updates.push({t: Date.now()});
  }
  window.__dashboard.refreshCampaign = refresh;

  draw(JSON.parse(document.getElementById("cfg").textContent));
  document.getElementById("chart-objectives").on("plotly_click", ev => {  // a measured run: open its page
    const id = ev.points && ev.points[0] && ev.points[0].customdata;
    if (id) location.href = `/runs/${id}`;
  });
  window.__dashboard.ready = performance.now();
  const es = new EventSource("/api/store/stream");
  es.addEventListener("changed", CL.throttle(async () => {
    try { await refresh(); } catch (e) { CL.banner(String(e.message || e)); }
  }, 5000));
  es.addEventListener("store-error", ev => CL.banner(JSON.parse(ev.data).error));
  es.onopen = () => { CL.live(true); CL.banner(""); };
  es.onerror = () => CL.live(false);
})();
