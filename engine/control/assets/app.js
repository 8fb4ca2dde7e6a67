// tickflow dashboard: one plain script, no build step, no dependencies but uPlot (vendored).
// Owns what the page shows: Live (spreads over the broadcast sink's WebSocket, or polling
// /api/opportunities), History (a day's charts drawn as /api/dashboard_data's NDJSON lines arrive)
// and Memory (RSS against the budget, components, trend, alerts). It holds no data the server
// has not sent; every list it keeps has a bound (the *_MAX constants below).
"use strict";

(() => {
  // ---------- limits and periods ----------
  const SPREAD_KEYS_MAX = 4096;      // venue pairs remembered from spreads:* (least recent evicted)
  const SPREAD_ROWS_SHOWN = 20;      // top spreads table
  const OPP_ROWS_SHOWN = 20;         // opportunities table (the API's `limit`)
  const OPP_EVENTS_MAX = 50;         // recent opportunity start/end events kept
  const CHARTS_MAX = 48;             // uPlot charts kept in the DOM per history request
  const OVERFLOW_ROWS_MAX = 500;     // pairs past CHARTS_MAX listed by name (the rest counted)
  const LINE_BYTES_MAX = 64 << 20;   // one NDJSON line larger than this ends the stream (error)
  const HEALTH_EVERY_MS = 2000;
  const OPPS_EVERY_MS_POLLING = 2000;
  const OPPS_EVERY_MS_WS = 5000;
  const MEMORY_EVERY_MS = 3000;
  const TREND_EVERY_MS = 5000;
  const WS_RETRY_MS_MAX = 30000;

  const $ = (id) => document.getElementById(id);

  // ---------- token: #token=… (never sent to the server) or ?token=… ----------
  const token = (() => {
    const fromHash = new URLSearchParams(location.hash.replace(/^#/, "")).get("token");
    return fromHash || new URLSearchParams(location.search).get("token") || "";
  })();

  // ---------- formatting ----------
  const fmtBp = (v) => (v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(2));
  const fmtInt = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US"));
  function fmtBytes(bytes) {
    if (bytes === null || bytes === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
  }
  function fmtAge(ms) {
    if (ms === null || ms === undefined) return "never";
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
    if (ms < 7200000) return `${Math.round(ms / 60000)} min`;
    return `${(ms / 3600000).toFixed(1)} h`;
  }
  const fmtTime = (ms) => new Date(ms).toISOString().slice(11, 19) + "Z";

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }
  function td(text, cls) { return el("td", { class: cls || "", text: String(text) }); }
  function signClass(v) { return v > 0 ? "num pos" : v < 0 ? "num neg" : "num"; }

  // ---------- API access ----------
  class ApiError extends Error {
    constructor(status, body, fallback) {
      const detail = body && body.error ? body.error : null;
      super(detail ? `${detail.message} (${status} ${detail.code})` : `${fallback} (HTTP ${status})`);
      this.status = status;
      this.detail = detail;
    }
  }
  function apiHeaders() {
    return token ? { Authorization: `Bearer ${token}` } : {};
  }
  async function apiGet(path, signal) {
    const response = await fetch(path, { headers: apiHeaders(), signal, cache: "no-store" });
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (!response.ok && !(path === "/health" && body)) throw new ApiError(response.status, body, path);
    if (response.status === 401) showPageError("Unauthorized: open the dashboard as …/#token=YOUR_TOKEN");
    return body;
  }
  function showPageError(message) {
    const box = $("page-error");
    box.textContent = message;
    box.hidden = !message;
  }

  /// Calls `task` now and then every `period_ms` after each run ends (never overlapping).
  function every(period_ms, task) {
    const run = async () => {
      try { await task(); } catch (error) { noteError(error); }
      setTimeout(run, typeof period_ms === "function" ? period_ms() : period_ms);
    };
    run();
  }
  function noteError(error) {
    if (error && error.status === 401) {
      showPageError("Unauthorized: open the dashboard as …/#token=YOUR_TOKEN");
    }
  }

  // ---------- tabs ----------
  let currentTab = "live";
  function showTab(name) {
    currentTab = name;
    for (const button of document.querySelectorAll(".tabs button")) {
      button.setAttribute("aria-selected", String(button.dataset.tab === name));
    }
    for (const panel of document.querySelectorAll("[data-tab-panel]")) {
      panel.hidden = panel.dataset.tabPanel !== name;
    }
    if (location.hash.indexOf("token=") < 0) history.replaceState(null, "", `#${name}`);
    if (name === "memory") { refreshTrend().catch(noteError); }
    if (name === "history") { for (const chart of charts) resizeChart(chart); }
  }
  for (const button of document.querySelectorAll(".tabs button")) {
    button.addEventListener("click", () => showTab(button.dataset.tab));
  }

  // ---------- configuration from /api/endpoints ----------
  let thresholds = [];
  function fillThresholds(select, values) {
    select.replaceChildren(...values.map((v) => el("option", { value: String(v), text: String(v) })));
  }

  // ===================================================================================
  // Live
  // ===================================================================================
  const spreads = new Map(); // "symbol|buy|sell" → latest spread sample (Map order = recency)
  let spreadsFromWs = false;
  let liveDirty = false;
  let wsUpdates = 0;
  let lastTelemetry = null;

  function setLiveMode(text, cls) {
    const badge = $("live-mode");
    badge.textContent = text;
    badge.className = `badge ${cls}`;
  }

  function rememberSpread(key, row) {
    spreads.delete(key);
    spreads.set(key, row);
    if (spreads.size > SPREAD_KEYS_MAX) spreads.delete(spreads.keys().next().value);
    liveDirty = true;
  }

  function renderSpreads() {
    if (!liveDirty) return;
    liveDirty = false;
    const now = Date.now();
    const rows = [...spreads.values()]
      .filter((row) => row.last_bp !== null && Number.isFinite(row.last_bp))
      .sort((a, b) => b.last_bp - a.last_bp)
      .slice(0, SPREAD_ROWS_SHOWN);
    $("spreads-table").tBodies[0].replaceChildren(...rows.map((row) => el("tr", {},
      td(row.symbol), td(row.buy_venue), td(row.sell_venue),
      td(fmtBp(row.last_bp), signClass(row.last_bp)), td(fmtBp(row.mean_bp), "num"),
      td(fmtBp(row.lower_bp), "num"), td(fmtBp(row.upper_bp), "num"),
      td(row.at_ms ? fmtAge(Math.max(0, now - row.at_ms)) : "–", "num"))));
    $("spreads-empty").hidden = rows.length > 0;
    $("spreads-note").textContent = spreadsFromWs
      ? `${spreads.size} pairs · ${fmtInt(wsUpdates)} updates over WebSocket`
      : `${spreads.size} pairs · from /api/opportunities`;
  }
  setInterval(renderSpreads, 500);

  // --- the broadcast sink's WebSocket ---
  let wsUrl = null;
  let ws = null;
  let wsRetryMs = 1000;

  function connectWs() {
    if (!wsUrl) return;
    const protocols = ["tickflow.v1"];
    if (token) protocols.push(`tickflow.token.${token}`);
    let socket;
    try { socket = new WebSocket(wsUrl, protocols); } catch (error) {
      setLiveMode("live: polling (WebSocket refused)", "warn");
      return;
    }
    ws = socket;
    setLiveMode("live: connecting", "muted");
    socket.addEventListener("open", () => {
      wsRetryMs = 1000;
      socket.send(JSON.stringify({ op: "subscribe", channels: ["spreads:*", "telemetry"], snapshot: true }));
      socket.send(JSON.stringify({ op: "subscribe", channels: ["opportunities"] }));
    });
    socket.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (_) { return; }
      onWsMessage(message);
    });
    socket.addEventListener("close", () => {
      ws = null;
      spreadsFromWs = false;
      setLiveMode("live: polling (WebSocket closed)", "warn");
      setTimeout(connectWs, wsRetryMs);
      wsRetryMs = Math.min(wsRetryMs * 2, WS_RETRY_MS_MAX);
    });
  }

  function onWsMessage(message) {
    if (message.hello) {
      spreadsFromWs = true;
      setLiveMode("live: WebSocket", "ok");
      return;
    }
    if (message.lagged !== undefined) {
      addOppEvent(`lost ${message.lagged} events (this browser fell behind)`);
      return;
    }
    if (message.error) {
      addOppEvent(`WebSocket error: ${message.error}`);
      return;
    }
    if (!message.ch || !Array.isArray(message.data)) return;
    if (message.ch.startsWith("spreads:")) {
      for (const s of message.data) {
        wsUpdates += 1;
        rememberSpread(`${s.symbol}|${s.buy_venue}|${s.sell_venue}`, {
          symbol: s.symbol, buy_venue: s.buy_venue, sell_venue: s.sell_venue,
          last_bp: s.last_bp, mean_bp: s.window_mean_bp,
          lower_bp: s.band_lower_bp, upper_bp: s.band_upper_bp,
          at_ms: Math.round((s.bucket_start_ns + s.bucket_duration_ns) / 1e6),
        });
      }
    } else if (message.ch === "opportunities") {
      for (const o of message.data) {
        addOppEvent(`${fmtTime(o.ts_ns / 1e6)} ${o.kind} ${o.symbol} ${o.buy_venue}→${o.sell_venue} ` +
          `${fmtBp(o.spread_bp)} bp (peak ${fmtBp(o.peak_bp)}, threshold ${o.threshold_bp})`);
      }
    } else if (message.ch === "telemetry") {
      lastTelemetry = message.data[message.data.length - 1] || lastTelemetry;
      renderTelemetry();
    }
  }

  function addOppEvent(text) {
    const list = $("opp-events");
    list.prepend(el("li", { text }));
    $("opp-events-empty").hidden = true;
    while (list.children.length > OPP_EVENTS_MAX) list.lastElementChild.remove();
  }

  function renderTelemetry() {
    const t = lastTelemetry;
    if (!t) return;
    const items = [
      ["records in", fmtInt(t.records_in)], ["records out", fmtInt(t.records_out)],
      ["connections up", fmtInt(t.connections_up)], ["reconnects", fmtInt(t.reconnects)],
      ["windows live", fmtInt(t.windows_live)], ["ring drops", fmtInt(t.ring_drops)],
      ["sink drops", fmtInt(t.sink_drops)], ["decode errors", fmtInt(t.decode_errors)],
    ];
    $("telemetry").replaceChildren(...items.map(([k, v]) => el("div", { class: "stat" },
      el("span", { class: "value", text: v }), el("span", { class: "label", text: k }))));
  }

  // --- /api/opportunities (always; also the spreads table while there is no WebSocket) ---
  async function refreshOpportunities() {
    const threshold = $("opps-threshold").value;
    const minCycles = Math.max(0, parseInt($("opps-min-cycles").value, 10) || 0);
    const query = new URLSearchParams({ min_cycles: String(minCycles), sort: "spread", limit: "1000" });
    if (threshold) query.set("threshold_bp", threshold);
    const body = await apiGet(`/api/opportunities?${query}`);
    const list = body.opportunities || [];
    $("opps-table").tBodies[0].replaceChildren(...list.slice(0, OPP_ROWS_SHOWN).map((o) => el("tr", {},
      td(o.symbol), td(o.buy_venue), td(o.sell_venue),
      td(fmtBp(o.spread_bp), signClass(o.spread_bp)), td(fmtBp(o.mean_bp), "num"),
      td(fmtBp(o.std_bp), "num"), td(fmtBp(o.upper_bp), "num"),
      td(fmtInt(o.cycles), "num"),
      td(o.cycle_active ? "active" : o.warming ? "warming" : o.above_threshold ? "above" : ""))));
    $("opps-empty").hidden = list.length > 0;
    $("opps-empty").textContent = body.engine === false ? "No engine (history-only server)." : "No pair yet.";
    $("opps-note").textContent = `${fmtInt(body.total)} pairs · snapshot ${fmtAge(body.snapshot_age_ms)} old`;
    if (!spreadsFromWs) {
      for (const o of list) {
        rememberSpread(`${o.symbol}|${o.buy_venue}|${o.sell_venue}`, {
          symbol: o.symbol, buy_venue: o.buy_venue, sell_venue: o.sell_venue,
          last_bp: o.spread_bp, mean_bp: o.mean_bp, lower_bp: o.lower_bp, upper_bp: o.upper_bp,
          at_ms: o.last_update_ms,
        });
      }
      renderSpreads();
    }
  }

  // --- /health: feeds per venue and the header badge ---
  async function refreshHealth() {
    const body = await apiGet("/health");
    const badge = $("health-badge");
    badge.textContent = body.status === "ok" ? "healthy" : body.status;
    badge.className = `badge ${body.status === "ok" ? "ok" : body.status === "unhealthy" ? "bad" : "warn"}`;
    badge.title = (body.reasons || []).join("\n");
    const venues = body.venues || [];
    $("feeds").replaceChildren(...venues.map((v) => {
      const state = v.connections_up === 0 ? "down" : v.connections_up < v.connections_planned ? "partial" : "up";
      return el("div", { class: `feed ${state}`, "data-venue": v.venue },
        el("div", { class: "name" }, el("span", { text: v.venue }),
          el("span", { class: "muted", text: `${v.connections_up}/${v.connections_planned} up` })),
        el("div", { class: "detail", text: `last data ${fmtAge(v.last_data_age_ms)}${v.last_data_age_ms === null ? "" : " ago"}` }),
        el("div", { class: "detail", text: `${fmtInt(v.records)} records · ${fmtInt(v.reconnects)} reconnects` }),
        v.down_for_ms > 0 ? el("div", { class: "detail", text: `down for ${fmtAge(v.down_for_ms)}` }) : "");
    }));
    $("feeds-note").textContent = body.mode === "history"
      ? "history-only server: no feeds"
      : `${venues.filter((v) => v.connections_up > 0).length}/${venues.length} venues up · uptime ${fmtAge(body.uptime_ms)}`;
    if (body.api_version !== undefined) $("api-version").textContent = `API v${body.api_version}`;
  }

  // ===================================================================================
  // History
  // ===================================================================================
  const charts = []; // { uplot, box } of the current request, at most CHARTS_MAX
  let historyAbort = null;

  function clearCharts() {
    for (const chart of charts) chart.uplot.destroy();
    charts.length = 0;
    $("charts").replaceChildren();
  }

  function chartWidth() {
    const grid = $("charts");
    const columns = Math.max(1, Math.floor((grid.clientWidth + 12) / (600 + 12)));
    return Math.max(300, Math.floor((grid.clientWidth - 12 * (columns - 1)) / columns) - 22);
  }
  function resizeChart(chart) {
    if (chart.box.clientWidth > 0) chart.uplot.setSize({ width: chart.box.clientWidth, height: 220 });
  }
  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const chart of charts) resizeChart(chart);
      if (trendChart) resizeTrend();
    }, 150);
  });

  const utc = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
  /// Time axis labels in UTC, 24 h: HH:MM, HH:MM:SS under a minute apart, tenths under a second.
  const utcTicks = (u, splits, axisIndex, space, increment) => splits.map((s) => {
    const iso = new Date(s * 1e3).toISOString();
    return increment < 1 ? iso.slice(11, 21) : increment < 60 ? iso.slice(11, 19) : iso.slice(11, 16);
  });
  const utcAxis = { values: utcTicks, space: 70 };
  const utcSeries = { label: "UTC", value: (u, v) => (v === null || v === undefined ? "--" : new Date(v * 1e3).toISOString().slice(0, 19).replace("T", " ")) };

  /// A pair's arrays with a null point inside every gap that has no point already, so the lines
  /// break there (uPlot draws no line across a null).
  function withGapBreaks(pair) {
    const ts = pair.ts_ms;
    const gaps = (pair.gaps || []).filter((g) => Array.isArray(g) && g.length === 2).sort((a, b) => a[0] - b[0]);
    const xs = [];
    const spread = [];
    const upper = [];
    const lower = [];
    let gapIndex = 0;
    for (let i = 0; i < ts.length; i += 1) {
      while (gapIndex < gaps.length && gaps[gapIndex][1] <= ts[i]) {
        const [start, end] = gaps[gapIndex];
        const previous = xs.length ? xs[xs.length - 1] * 1e3 : -Infinity;
        if (previous <= start || previous < end) {
          xs.push((start + end) / 2e3); spread.push(null); upper.push(null); lower.push(null);
        }
        gapIndex += 1;
      }
      xs.push(ts[i] / 1e3);
      spread.push(pair.spread_bp[i]);
      upper.push(pair.upper_bp[i]);
      lower.push(pair.lower_bp[i]);
    }
    return { data: [xs, spread, upper, lower], gaps };
  }

  /// Shades each gap interval in the plot area (drawn under the series).
  function gapShading(gaps) {
    return (u) => {
      const { ctx } = u;
      const { top, height, left, width } = u.bbox;
      ctx.save();
      ctx.fillStyle = "rgba(220, 38, 38, 0.08)";
      for (const [start, end] of gaps) {
        const x0 = Math.max(left, u.valToPos(start / 1e3, "x", true));
        const x1 = Math.min(left + width, u.valToPos(end / 1e3, "x", true));
        if (x1 > x0) ctx.fillRect(x0, top, Math.max(1, x1 - x0), height);
      }
      ctx.restore();
    };
  }

  function addChart(pair) {
    const { data, gaps } = withGapBreaks(pair);
    const box = el("div", { class: "chart-box" });
    const points = pair.ts_ms.length;
    const title = el("div", { class: "title" },
      el("span", {}, el("b", { text: pair.symbol }), ` ${pair.buy_venue} → ${pair.sell_venue}`),
      el("span", { class: "muted", text: `${fmtInt(points)} points${gaps.length ? ` · ${gaps.length} gap${gaps.length === 1 ? "" : "s"}` : ""}` }));
    const card = el("div", {
      class: "chart", "data-symbol": pair.symbol, "data-buy": pair.buy_venue, "data-sell": pair.sell_venue,
      "data-points": String(points), "data-gaps": String(gaps.length),
    }, title, box);
    $("charts").append(card);
    const band = { stroke: "#f59e0b", width: 1, dash: [4, 3], points: { show: false } };
    const uplot = new uPlot({
      width: box.clientWidth || chartWidth(),
      height: 220,
      tzDate: utc,
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
      scales: { x: { time: true } },
      axes: [utcAxis, { label: "bp", size: 56 }],
      series: [
        utcSeries,
        { label: "spread", stroke: "#2563eb", width: 1, points: { show: false } },
        { label: "upper", ...band },
        { label: "lower", ...band },
      ],
      hooks: { drawClear: [gapShading(gaps)] },
    }, data, box);
    charts.push({ uplot, box });
  }

  function setProgress(state, text) {
    const progress = $("h-progress");
    progress.dataset.state = state;
    progress.textContent = text;
  }
  function showHistoryError(message) {
    const box = $("h-error");
    box.textContent = message;
    box.hidden = !message;
  }

  async function loadHistory(event) {
    if (event) event.preventDefault();
    if (historyAbort) historyAbort.abort();
    const controller = new AbortController();
    historyAbort = controller;
    clearCharts();
    showHistoryError("");
    $("h-overflow").hidden = true;
    $("h-day").hidden = true;
    const date = $("h-date").value;
    const query = new URLSearchParams({ date, min_cycles: String(Math.max(0, parseInt($("h-min-cycles").value, 10) || 0)) });
    if ($("h-threshold").value) query.set("threshold_bp", $("h-threshold").value);
    const maxPoints = parseInt($("h-max-points").value, 10);
    if (Number.isFinite(maxPoints) && maxPoints > 0) query.set("max_points", String(maxPoints));
    $("h-load").disabled = true;
    $("h-stop").disabled = false;
    setProgress("requesting", `Requesting ${date}…`);
    const started = performance.now();
    let pairs = 0;
    let bytes = 0;
    let overflow = 0;
    let terminal = null;
    const overflowList = el("ul", { class: "events" });

    const onLine = (line) => {
      if (!line.trim()) return;
      let message;
      try { message = JSON.parse(line); } catch (error) {
        terminal = { type: "error", message: `a line is not JSON (${error.message})` };
        return;
      }
      if (message.type === "pair") {
        pairs += 1;
        if (charts.length < CHARTS_MAX) {
          addChart(message);
        } else {
          overflow += 1;
          if (overflowList.children.length < OVERFLOW_ROWS_MAX) {
            overflowList.append(el("li", { text: `${message.symbol} ${message.buy_venue} → ${message.sell_venue} · ${fmtInt(message.ts_ms.length)} points` }));
          }
          const more = overflow - overflowList.children.length;
          const note = $("h-overflow");
          note.hidden = false;
          note.replaceChildren(
            `The first ${CHARTS_MAX} pairs are charted; ${fmtInt(overflow)} more are listed below${more > 0 ? ` (${fmtInt(more)} not listed)` : ""}. Raise min cycles to chart others.`,
            overflowList);
        }
        setProgress("streaming", `Streaming… ${fmtInt(pairs)} pairs received (${fmtBytes(bytes)})`);
      } else if (message.type === "summary" || message.type === "error") {
        terminal = message;
      }
    };

    try {
      const response = await fetch(`/api/dashboard_data?${query}`, { headers: apiHeaders(), signal: controller.signal, cache: "no-store" });
      if (!response.ok) {
        let body = null;
        try { body = await response.json(); } catch (_) { body = null; }
        const error = new ApiError(response.status, body, "dashboard_data");
        const retry = response.headers.get("Retry-After");
        throw new Error(retry ? `${error.message}; retry in ${retry} s` : error.message);
      }
      setProgress("streaming", "Streaming… 0 pairs received");
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let pending = []; // pieces of the line being received
      let pendingBytes = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        bytes += value.byteLength;
        $("h-progress").dataset.bytes = String(bytes);
        const pieces = decoder.decode(value, { stream: true }).split("\n");
        for (let i = 0; i < pieces.length - 1; i += 1) {
          pending.push(pieces[i]);
          onLine(pending.join(""));
          pending = [];
          pendingBytes = 0;
          if (terminal && terminal.type === "error") break;
          // Let the browser paint this chart before the next line.
          await new Promise((resolve) => setTimeout(resolve, 0));
        }
        if (terminal && terminal.type === "error") { controller.abort(); break; }
        const rest = pieces[pieces.length - 1];
        if (rest) { pending.push(rest); pendingBytes += rest.length; }
        if (pendingBytes > LINE_BYTES_MAX) {
          terminal = { type: "error", message: `a line is longer than ${fmtBytes(LINE_BYTES_MAX)}` };
          controller.abort();
          break;
        }
      }
      const seconds = ((performance.now() - started) / 1e3).toFixed(2);
      if (terminal && terminal.type === "summary") {
        setProgress("done", `${fmtInt(pairs)} pairs · ${fmtInt(terminal.points)} points · ${fmtBytes(bytes)} in ${seconds} s`);
        loadDaySummary(date).catch(() => {});
      } else if (terminal && terminal.type === "error") {
        setProgress("error", `${fmtInt(pairs)} pairs received, then the stream failed`);
        showHistoryError(`Error after ${fmtInt(pairs)} pairs: ${terminal.message}${terminal.code ? ` (${terminal.code})` : ""}. The charts drawn before it stay below.`);
      } else {
        setProgress("cut", `${fmtInt(pairs)} pairs received, then the stream was cut`);
        showHistoryError(`The stream ended without its summary line after ${fmtInt(pairs)} pairs (server stopped or connection lost). The charts drawn before it stay below.`);
      }
    } catch (error) {
      if (controller.signal.aborted && historyAbort !== controller) {
        // superseded by a newer request: it owns the progress line now
      } else if (controller.signal.aborted && !terminal) {
        setProgress("stopped", `Stopped after ${fmtInt(pairs)} pairs.`);
      } else {
        setProgress(pairs ? "cut" : "error", pairs ? `${fmtInt(pairs)} pairs received, then the stream broke` : "Request failed");
        showHistoryError(pairs
          ? `The stream broke after ${fmtInt(pairs)} pairs: ${error.message}. The charts drawn before it stay below.`
          : `${error.message}`);
      }
    } finally {
      if (historyAbort === controller) {
        historyAbort = null;
        $("h-load").disabled = false;
        $("h-stop").disabled = true;
      }
      $("h-progress").dataset.pairs = String(pairs);
      $("h-progress").dataset.charts = String(charts.length);
    }
  }

  async function loadDaySummary(date) {
    const query = new URLSearchParams({ date });
    if ($("h-threshold").value) query.set("threshold_bp", $("h-threshold").value);
    const body = await apiGet(`/api/history/opportunities?${query}`);
    const rows = (body.pairs || []).slice(0, 30);
    if (!rows.length) return;
    const table = el("table", { class: "data" },
      el("thead", {}, el("tr", {}, el("th", { text: "symbol" }), el("th", { text: "buy" }), el("th", { text: "sell" }), el("th", { class: "num", text: "cycles" }))),
      el("tbody", {}, ...rows.map((p) => el("tr", {}, td(p.symbol), td(p.buy_venue), td(p.sell_venue), td(fmtInt(p.cycles), "num")))));
    $("h-day-table").replaceChildren(table, body.count > rows.length ? el("p", { class: "muted", text: `${fmtInt(body.count - rows.length)} more pairs` }) : "");
    $("h-day").hidden = false;
  }

  $("history-form").addEventListener("submit", loadHistory);
  $("h-stop").addEventListener("click", () => { if (historyAbort) historyAbort.abort(); });

  // ===================================================================================
  // Memory
  // ===================================================================================
  let trendChart = null;

  // The bar fills to 100 %; its colour follows the alert thresholds of what it shows (the
  // defaults of [http.alerts]: RSS against the worst-case budget warns at 100 % and sheds at
  // 115 %, system memory at 90 % and 97 %).
  function meter(bar, fraction, warnAt, badAt) {
    const value = fraction || 0;
    const clamped = Math.max(0, Math.min(1, value));
    bar.style.width = `${(clamped * 100).toFixed(1)}%`;
    bar.className = `meter-fill${value >= badAt ? " bad" : value >= warnAt ? " warn" : ""}`;
  }

  async function refreshMemory() {
    const body = await apiGet("/api/monitoring/memory");
    const rss = body.process.rss_bytes;
    const budget = body.budget.total_bytes;
    meter($("rss-bar"), budget ? rss / budget : 0, 1.0, 1.15);
    $("rss-text").textContent = `${fmtBytes(rss)} of ${fmtBytes(budget)} (${(body.budget.rss_percent_of_budget ?? 0).toFixed(1)}%)`;
    meter($("sys-bar"), body.system.used_percent / 100, 0.9, 0.97);
    $("sys-text").textContent = `${fmtBytes(body.system.total_bytes - body.system.available_bytes)} of ${fmtBytes(body.system.total_bytes)} (${body.system.used_percent.toFixed(1)}%)`;
    const kv = [["RSS peak", fmtBytes(body.process.rss_peak_bytes)], ["virtual", fmtBytes(body.process.virtual_bytes)],
      ["shedding", body.shedding && body.shedding.active ? body.shedding.actions.join("; ") : "no"]];
    if (body.allocator) {
      kv.push([`${body.allocator.allocator} committed`, `${fmtBytes(body.allocator.committed_bytes)} (peak ${fmtBytes(body.allocator.committed_peak_bytes)})`]);
    }
    if (body.shedding && body.shedding.windows_cap !== null && body.shedding.windows_cap !== undefined) {
      kv.push(["window cap", `${body.shedding.windows_cap} (shed so far: ${body.shedding.windows_shed_total ?? 0})`]);
    }
    $("mem-kv").replaceChildren(...kv.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    $("components-table").tBodies[0].replaceChildren(...(body.components || []).map((c) => {
      const fill = el("td", { class: "fill" });
      if (c.fill !== null && c.fill !== undefined) {
        const bar = el("div", { class: "meter-fill" });
        meter(bar, c.fill, 0.8, 0.95);
        fill.append(el("div", { class: "meter", title: `${(c.fill * 100).toFixed(1)}%` }, bar));
      } else {
        fill.append(el("span", { class: "muted", text: "not measured" }));
      }
      const detail = el("td", { class: "muted", text: c.basis || "" });
      detail.title = c.detail || "";
      return el("tr", {}, td(c.name), td(fmtBytes(c.used_bytes), "num"), td(fmtBytes(c.budget_bytes), "num"), fill, detail);
    }));
  }

  async function refreshAlerts() {
    const body = await apiGet("/api/monitoring/alerts");
    const active = body.active || [];
    $("alerts-active").replaceChildren(...active.map((a) => el("li", { class: a.level, "data-alert": a.id },
      `${a.level.toUpperCase()} · ${a.message}`,
      a.shed && a.shed.length ? el("div", { text: `shed: ${a.shed.join("; ")}` }) : "")));
    $("alerts-empty").hidden = active.length > 0;
    $("alerts-note").textContent = `${active.length} active`;
    const recent = (body.history || []).slice(-20).reverse();
    $("alerts-recent").replaceChildren(...recent.map((h) => el("li", { text: `${fmtTime(h.ts_ms)} ${h.id}: ${h.from} → ${h.to} · ${h.message}` })));
  }

  function resizeTrend() {
    const box = $("trend-chart");
    if (box.clientWidth > 0) trendChart.setSize({ width: box.clientWidth, height: 240 });
  }

  async function refreshTrend() {
    const minutes = $("trend-minutes").value;
    const body = await apiGet(`/api/monitoring/memory/trend?minutes=${encodeURIComponent(minutes)}`);
    const samples = body.samples || [];
    const mib = (b) => (b === null || b === undefined ? null : b / 1048576);
    const data = [samples.map((s) => s.ts_ms / 1e3), samples.map((s) => mib(s.rss_bytes)), samples.map((s) => mib(s.budget_bytes))];
    $("trend-empty").hidden = samples.length > 0;
    $("trend-chart").dataset.samples = String(samples.length);
    if (!trendChart) {
      const box = $("trend-chart");
      trendChart = new uPlot({
        width: box.clientWidth || 800,
        height: 240,
        tzDate: utc,
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max * 1.05, 1)] } },
        axes: [utcAxis, { label: "MiB", size: 64 }],
        series: [
          utcSeries,
          { label: "RSS MiB", stroke: "#2563eb", width: 2, fill: "rgba(37, 99, 235, 0.08)", points: { show: samples.length < 3 } },
          { label: "budget MiB", stroke: "#dc2626", width: 1, dash: [6, 4], points: { show: false } },
        ],
      }, data, box);
    } else {
      trendChart.setData(data);
    }
  }
  $("trend-minutes").addEventListener("change", () => refreshTrend().catch(noteError));

  // ===================================================================================
  // Start
  // ===================================================================================
  async function start() {
    $("h-date").value = new Date().toISOString().slice(0, 10);
    let endpoints = null;
    try { endpoints = await apiGet("/api/endpoints"); } catch (error) {
      showPageError(`Cannot read /api/endpoints: ${error.message}`);
    }
    if (endpoints) {
      thresholds = endpoints.thresholds_bp || [];
      fillThresholds($("opps-threshold"), thresholds);
      fillThresholds($("h-threshold"), thresholds);
      const live = (endpoints.endpoints || []).find((e) => e.name === "ws");
      wsUrl = live ? live.url : null;
      if (!endpoints.history) setProgress("idle", "This server has no history directory.");
    }
    if (wsUrl) connectWs(); else setLiveMode("live: polling (no WebSocket sink)", "warn");
    $("opps-threshold").addEventListener("change", () => refreshOpportunities().catch(noteError));
    every(HEALTH_EVERY_MS, refreshHealth);
    every(() => (spreadsFromWs ? OPPS_EVERY_MS_WS : OPPS_EVERY_MS_POLLING), refreshOpportunities);
    every(MEMORY_EVERY_MS, async () => { await refreshMemory(); await refreshAlerts(); });
    every(TREND_EVERY_MS, async () => { if (currentTab === "memory") await refreshTrend(); });
    const initial = location.hash.replace(/^#/, "");
    showTab(["live", "history", "memory"].includes(initial) ? initial : "live");
  }
  start();
})();
