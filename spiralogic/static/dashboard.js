/* The launch dashboard: draws GET /admin/dashboard/data and asks again every few seconds.
 *
 * Everything is written with textContent and CSSOM, never markup strings or style
 * attributes, so the page runs under "Content-Security-Policy: default-src 'self'".
 * Times are shown in UTC, the zone the server buckets minutes and hours in. */
"use strict";

(() => {
  const body = document.body;
  const controls = document.getElementById("controls");
  const refreshMs = Number(body.dataset.refreshMs);
  const byId = (id) => document.getElementById(id);
  const seconds = (iso) => Date.parse(iso) / 1000;
  // An ISO time or milliseconds, as "YYYY-MM-DD HH:MM:SS" in UTC.
  const utc = (when) => (when == null ? "—" : new Date(when).toISOString().slice(0, 19).replace("T", " "));
  const clock = (ts) => new Date(ts * 1e3).toISOString().slice(11, 16); // HH:MM UTC
  const percent = (ratio) => (ratio == null ? null : 100 * ratio);
  const number = (value, digits = 0) =>
    value == null ? "—" : Number(value).toLocaleString("en", { maximumFractionDigits: digits });
  const pick = (rows, key, convert = (value) => value) => rows.map((row) => convert(row[key]));
  const toned = (text, tone) => ({ text, tone });
  const VERDICTS = {
    successful: toned("pass", "good"),
    failed: toned("FAIL", "bad"),
    inconclusive: toned("inconclusive", "warn"),
    error: toned("error", "bad"),
  };
  const MODE_TONES = { full: "good", lite: "warn", fallback: "bad" };
  const OPERATORS = { "<=": "≤", ">=": "≥", "<": "<" };

  // -- Charts: each is built once and given new data on every refresh.

  const CHARTS = {
    latency: {
      target: "chart-latency",
      unit: " ms",
      series: [["P50", "#2b8a3e"], ["P95", "#e67700"], ["P99", "#c92a2a"]],
      columns: (d) => [pick(d.latency, "minute", seconds), ...["p50", "p95", "p99"].map((key) => pick(d.latency, key))],
    },
    firstToken: {
      target: "chart-first-token",
      unit: " ms",
      series: [["P95", "#1971c2"]],
      columns: (d) => [pick(d.firstToken, "minute", seconds), pick(d.firstToken, "p95")],
    },
    rates: {
      target: "chart-rates",
      unit: " %",
      digits: 2,
      series: [["Errors", "#c92a2a"], ["Fallback", "#7048e8"]],
      // Two queries, so their minutes are aligned here rather than assumed equal.
      columns: (d) =>
        uPlot.join([
          [pick(d.errors, "minute", seconds), pick(d.errors, "errorRate", percent)],
          [pick(d.fallback, "minute", seconds), pick(d.fallback, "fallbackRate", percent)],
        ]),
    },
    cache: {
      target: "chart-cache",
      unit: " %",
      digits: 1,
      series: [["Cache hits", "#0c8599"]],
      columns: (d) => [pick(d.cache, "hour", seconds), pick(d.cache, "cacheHitRatio", percent)],
    },
  };
  const HEIGHT = 220;
  // [since, until] of the data shown, in seconds: every chart's time axis spans the whole window.
  let windowSpan = null;

  function createChart(spec) {
    const target = byId(spec.target);
    const format = (value) => (value == null ? "—" : number(value, spec.digits) + spec.unit);
    const options = {
      width: target.clientWidth,
      height: HEIGHT,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      scales: {
        x: { time: true, range: (u, min, max) => windowSpan || [min, max] },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] },
      },
      series: [
        { label: "UTC", value: (u, ts) => (ts == null ? "—" : utc(ts * 1e3)) },
        ...spec.series.map(([label, stroke]) => ({ label, stroke, width: 2, value: (u, v) => format(v) })),
      ],
      axes: [
        { values: (u, splits) => splits.map(clock) },
        { size: 60, values: (u, splits) => splits.map((v) => number(v, spec.digits)) },
      ],
    };
    const chart = new uPlot(options, [[], ...spec.series.map(() => [])], target);
    new ResizeObserver(() => chart.setSize({ width: target.clientWidth, height: HEIGHT })).observe(target);
    return chart;
  }

  const charts = Object.fromEntries(Object.entries(CHARTS).map(([name, spec]) => [name, createChart(spec)]));

  // -- Text, tiles and tables

  function show(id, text, tone = "") {
    const element = byId(id);
    element.textContent = text;
    element.dataset.tone = tone;
  }

  function fillTable(id, rows, cells) {
    const tbody = byId(id);
    const width = tbody.closest("table").tHead.rows[0].cells.length;
    const lines = rows.map((row) => {
      const line = document.createElement("tr");
      for (const value of cells(row)) {
        const cell = line.insertCell();
        const { text, tone } = value !== null && typeof value === "object" ? value : { text: value, tone: "" };
        cell.textContent = text ?? "—";
        if (tone) cell.dataset.tone = tone;
      }
      return line;
    });
    if (!lines.length) {
      const line = document.createElement("tr");
      const cell = line.insertCell();
      cell.colSpan = width;
      cell.className = "muted";
      cell.textContent = "none";
      lines.push(line);
    }
    tbody.replaceChildren(...lines);
  }

  function renderStatus({ rollout, mode, gates, alerts }) {
    show("phase", rollout.phase, rollout.phase === "aborted" ? "bad" : "");
    show("percent", `${number(rollout.percent, 2)} %`);
    const source = rollout.percentSource === "flag" ? "set at runtime" : "from the rollout.percent setting";
    byId("percent-source").textContent = rollout.phase === "ga" ? "GA: every user" : source;
    show("kill-switch", rollout.killSwitch ? "ON" : "off", rollout.killSwitch ? "bad" : "good");
    byId("kill-switch-note").textContent = rollout.killSwitch ? "baseline answers every turn" : "";
    show("mode", mode.current, MODE_TONES[mode.current]);
    byId("mode-reason").textContent = mode.since ? `${mode.reason}, since ${utc(mode.since)} UTC` : mode.reason;
    show("verdict", gates.holding ? "HOLDING" : "NOT HOLDING", gates.holding ? "good" : "bad");
    byId("verdict-detail").textContent = `${gates.requests} ${gates.candidate} turns, ${gates.reasons.length} reasons`;
    const firing = alerts.active.filter((alert) => alert.state === "firing").length;
    const pending = alerts.active.length - firing;
    show("alerts-firing", `${firing} firing`, firing ? "bad" : "good");
    show("alerts-pending", `${pending} pending`, pending ? "warn" : "");
  }

  function renderModes(modes) {
    byId("mode-bar").replaceChildren(
      ...modes.map((share) => {
        const part = document.createElement("span");
        part.dataset.mode = share.mode;
        part.style.width = `${share.percentage}%`;
        part.title = `${share.mode}: ${share.percentage}%`;
        return part;
      }),
    );
    fillTable("modes", modes, (share) => [
      toned(share.mode, MODE_TONES[share.mode]),
      number(share.count),
      `${number(share.percentage, 2)} %`,
    ]);
  }

  function renderGates(gates) {
    byId("gates-window").textContent = `${utc(gates.since)} – ${utc(gates.until)} UTC`;
    const measure = (value, unit) => (value == null ? "—" : `${number(value, 2)} ${unit}`);
    fillTable("gates", gates.gates, (gate) => [
      gate.title,
      measure(gate.value, gate.unit),
      gate.threshold == null ? "—" : `${OPERATORS[gate.operator]} ${measure(gate.threshold, gate.unit)}`,
      measure(gate.baseline, gate.unit),
      VERDICTS[gate.verdict],
      gate.note,
    ]);
    byId("samples").replaceChildren(
      ...gates.samples.map((sample) => {
        const cell = document.createElement("span");
        cell.dataset.tone = VERDICTS[sample.verdict].tone;
        const failed = sample.failed.length ? ` (${sample.failed.join(", ")})` : "";
        cell.title = `${utc(sample.minute)} UTC: ${sample.verdict}, ${sample.requests} turns${failed}`;
        return cell;
      }),
    );
    byId("reasons").replaceChildren(
      ...gates.reasons.map((reason) => {
        const item = document.createElement("li");
        item.textContent = reason;
        return item;
      }),
    );
  }

  function renderTrails({ alerts, mode, rollout }) {
    fillTable("alerts", alerts.active, (alert) => [
      alert.name,
      toned(alert.state, alert.state === "firing" ? "bad" : "warn"),
      alert.severity,
      utc(alert.since),
      alert.summary,
    ]);
    const at = (row) => utc(row.at);
    const change = (from, to) => `${from} → ${to}`;
    fillTable("alert-events", alerts.events, (row) => [at(row), row.name, change(row.from_state, row.to_state), number(row.value, 3)]);
    fillTable("transitions", mode.transitions, (row) => [at(row), change(row.from_mode, row.to_mode), row.reason, row.actor]);
    fillTable("rollout-history", rollout.history, (row) => [at(row), row.key, JSON.stringify(row.value), row.actor, row.reason]);
  }

  function render(data) {
    windowSpan = [seconds(data.window.since), seconds(data.window.until)];
    for (const [name, spec] of Object.entries(CHARTS)) charts[name].setData(spec.columns(data));
    renderStatus(data);
    renderModes(data.modes);
    renderGates(data.gates);
    renderTrails(data);
    byId("updated").textContent = `updated ${utc(data.generatedAt)} UTC · every ${refreshMs / 1000} s`;
  }

  // -- Refreshing

  let timer = null;
  let latest = 0; // only the newest request may draw: a changed window must not be overdrawn by an older answer

  function banner(text) {
    const element = byId("banner");
    element.textContent = text;
    element.hidden = !text;
  }

  async function failure(response) {
    try {
      return (await response.json()).error.message;
    } catch {
      return `HTTP ${response.status}`;
    }
  }

  async function refresh() {
    clearTimeout(timer);
    const ticket = ++latest;
    const query = new URLSearchParams(new FormData(controls));
    try {
      const response = await fetch(`${body.dataset.source}?${query}`, {
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      if (response.status === 401) {
        location.assign(body.dataset.login); // signed out, or the admin token was rotated
        return;
      }
      if (!response.ok) throw new Error(await failure(response));
      const data = await response.json();
      if (ticket === latest) {
        render(data);
        banner("");
      }
    } catch (error) {
      if (ticket === latest) banner(`No fresh data (${error.message}); showing the last received.`);
    }
    if (ticket === latest) timer = setTimeout(refresh, refreshMs);
  }

  for (const [name, value] of new URLSearchParams(location.search)) {
    if (controls.elements[name]) controls.elements[name].value = value;
  }
  controls.addEventListener("change", () => {
    history.replaceState(null, "", `?${new URLSearchParams(new FormData(controls))}`);
    refresh();
  });
  controls.addEventListener("submit", (event) => event.preventDefault());

  // For the browser console (and the browser test): the uPlot instances.
  window.launchDashboard = { charts };
  refresh();
})();
