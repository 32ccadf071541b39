// The outbox console's only script: it redraws the overview from
// /api/overview every few seconds, and ticks every box of the dead-letter
// list at once. Every page works without it.
"use strict";

(function () {
  const selectAll = document.getElementById("select-all");
  if (selectAll) {
    selectAll.addEventListener("change", function () {
      for (const box of document.querySelectorAll('input[name="id"]')) box.checked = selectAll.checked;
    });
  }
  if (!document.getElementById("chart-pending")) return;

  const svgNS = "http://www.w3.org/2000/svg";
  function text(id, value) {
    const el = document.getElementById(id);
    if (el) el.textContent = value;
  }
  function fmt(n, digits) { return n === null || n === undefined ? "–" : n.toFixed(digits); }
  function ago(seconds) { return seconds === null || seconds === undefined ? "–" : Math.round(seconds) + "s ago"; }

  // chart draws a polyline of ys over xs, with the top value as a label.
  function chart(id, xs, ys) {
    const svg = document.getElementById(id);
    if (!svg) return;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const pts = [];
    let top = 0;
    for (let i = 0; i < ys.length; i++) if (ys[i] !== null && ys[i] > top) top = ys[i];
    const x0 = xs.length ? xs[0] : 0, span = xs.length > 1 ? xs[xs.length - 1] - x0 : 1;
    for (let i = 0; i < xs.length; i++) {
      if (ys[i] === null) continue;
      const x = span ? ((xs[i] - x0) / span) * 300 : 300;
      const y = 58 - (top ? (ys[i] / top) * 48 : 0);
      pts.push(x.toFixed(1) + "," + y.toFixed(1));
    }
    const line = document.createElementNS(svgNS, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.appendChild(line);
    const label = document.createElementNS(svgNS, "text");
    label.setAttribute("x", "3");
    label.setAttribute("y", "9");
    label.textContent = "max " + (Number.isInteger(top) ? top : top.toFixed(1));
    svg.appendChild(label);
    svg.dataset.points = String(pts.length);
  }

  function rows(tableId, items, cells, empty) {
    const body = document.querySelector("#" + tableId + " tbody");
    if (!body) return;
    body.textContent = "";
    if (!items.length) {
      const tr = body.insertRow(), td = tr.insertCell();
      td.colSpan = document.querySelectorAll("#" + tableId + " thead th").length;
      td.className = "note";
      td.textContent = empty;
      return;
    }
    for (const item of items) {
      const tr = body.insertRow();
      for (const c of cells(item)) tr.insertCell().textContent = c;
    }
  }

  function render(d) {
    text("pending", d.pending);
    document.querySelector('[data-k="retrying"]').textContent = d.retrying;
    document.querySelector('[data-k="replayed"]').textContent = d.replayed;
    text("lag", fmt(d.lag_seconds, 1) + "s");
    document.getElementById("lag").dataset.seconds = d.lag_seconds;
    text("rate", fmt(d.rate, 1));
    if (d.observed) text("rate-note", "by the relay of this process");
    text("dead", d.dead);
    text("time", d.time ? d.time.replace("T", " ").replace(/\.\d+Z$/, "Z") : "not yet");
    document.querySelector('[data-k="lanes"]').textContent = d.lanes;
    const warnings = document.getElementById("warnings");
    warnings.textContent = "";
    const all = d.error ? [{ level: "error", text: "Cannot read the statistics: " + d.error }] : d.warnings;
    for (const w of all) {
      const li = document.createElement("li");
      li.className = w.level;
      li.textContent = w.text;
      warnings.appendChild(li);
    }
    if (d.log) text("log", d.log.summary);
    chart("chart-pending", d.series.t || [], d.series.pending || []);
    chart("chart-lag", d.series.t || [], d.series.lag || []);
    chart("chart-rate", d.series.t || [], d.series.rate || []);
    rows("relays", d.relays, function (r) {
      return [r.owner, r.lanes, r.lease_until.replace("T", " ").replace(/\.\d+Z$/, "Z"),
        r.last_delivery ? ago((Date.parse(d.time) - Date.parse(r.last_delivery)) / 1000) : "–"];
    }, "No live relay.");
    rows("lagging", d.lagging, function (l) {
      return [l.lane, l.owner || "nobody", l.pending, fmt(l.lag_seconds, 1) + "s", ago(l.moved_seconds_ago)];
    }, "No lane has pending messages.");
    rows("topics", d.topics, function (t) {
      const store = [t.topic, t.pending, fmt(t.lag_seconds, 1) + "s", t.dead];
      if (!d.observed) return store.concat(["–", "–", "–", "–", "–"]);
      return store.concat([t.delivered, fmt(t.rate, 1), fmt(t.publish_lag_seconds, 2) + "s", t.retried, t.dead_lettered]);
    }, "No topic has pending messages or dead letters" + (d.observed ? ", and the relay of this process has delivered none yet." : "."));
  }

  const every = Math.max(1, Number(document.getElementById("interval").textContent) || 2) * 1000;
  function poll() {
    fetch("/api/overview", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(render)
      .catch(function (e) { text("time", "refresh failed (" + e.message + ")"); })
      .finally(function () { setTimeout(poll, every); });
  }
  poll();
})();
