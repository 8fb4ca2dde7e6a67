// The dashboard in a real headless Chromium (Debian `chromium`, driven by playwright-core):
//   node engine/control/tests/browser/dashboard.test.mjs <base-url> --date YYYY-MM-DD [options]
// against a running control plane (engine/cli/tests/it/dashboard.rs starts the engine and runs
// this). Checks: the page loads with no console error; live values change (and arrive over the
// broadcast WebSocket with --expect-ws); feeds are shown; a history request renders its first
// chart before the NDJSON response has finished arriving and every pair by the end (counted
// against the same request made from Node); an error line or a cut stream mid-way is shown and the
// charts already drawn stay; the memory panel shows a trend. Screenshots go to --artifacts.
// Prints one `ok:` line per check, then `PASS`; exit 0 on success, 1 on a failed check, 2 when
// playwright-core is not installed (`.ci/run` installs it: npm ci --prefix engine/control/tests/browser).
// Every wait is for a state, bounded by --timeout-ms; nothing asserts a duration.

import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const usage = "usage: dashboard.test.mjs <base-url> --date YYYY-MM-DD [--min-cycles N] [--threshold-bp X] " +
  "[--max-points N] [--expect-pairs N] [--expect-ws] [--token T] [--artifacts DIR] [--timeout-ms N] [--chromium PATH]";

function parseArgs(argv) {
  const options = {
    url: null, date: null, minCycles: "0", thresholdBp: null, maxPoints: "2000", expectPairs: null,
    expectWs: false, token: "", artifacts: null, timeoutMs: 60000, chromium: "/usr/bin/chromium",
  };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      i += 1;
      return argv[i];
    };
    switch (arg) {
      case "--date": options.date = value(); break;
      case "--min-cycles": options.minCycles = value(); break;
      case "--threshold-bp": options.thresholdBp = value(); break;
      case "--max-points": options.maxPoints = value(); break;
      case "--expect-pairs": options.expectPairs = Number(value()); break;
      case "--expect-ws": options.expectWs = true; break;
      case "--token": options.token = value(); break;
      case "--artifacts": options.artifacts = value(); break;
      case "--timeout-ms": options.timeoutMs = Number(value()); break;
      case "--chromium": options.chromium = value(); break;
      default:
        if (arg.startsWith("--") || options.url) throw new Error(`unexpected argument ${arg}`);
        options.url = arg.replace(/\/+$/, "");
    }
  }
  if (!options.url || !options.date) throw new Error("the base URL and --date are required");
  return options;
}

let options;
try {
  options = parseArgs(process.argv.slice(2));
} catch (error) {
  console.error(`${error.message}\n${usage}`);
  process.exit(1);
}

let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (error) {
  console.error(
    "FAIL: playwright-core is not installed in engine/control/tests/browser/node_modules " +
    `(${error.code || error.message}). .ci/run installs it: npm ci --prefix engine/control/tests/browser`);
  process.exit(2);
}

class CheckFailed extends Error {}
function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
}
const ok = (message) => console.log(`ok: ${message}`);

const authHeaders = options.token ? { Authorization: `Bearer ${options.token}` } : {};
const pageUrl = `${options.url}/${options.token ? `#token=${encodeURIComponent(options.token)}` : ""}`;
const artifacts = options.artifacts;
if (artifacts) mkdirSync(artifacts, { recursive: true });
const userDataDir = mkdtempSync(path.join(tmpdir(), "tickflow-dashboard-chromium-"));

const consoleErrors = [];
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: options.chromium,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1440, height: 900 },
    timeout: options.timeoutMs,
  });
} catch (error) {
  console.error(`FAIL: chromium did not start from ${options.chromium}: ${error.message}`);
  rmSync(userDataDir, { recursive: true, force: true });
  process.exit(1);
}

const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(options.timeoutMs);
page.on("console", (message) => {
  if (message.type() === "error") consoleErrors.push(`console: ${message.text()} (${message.location().url})`);
});
page.on("pageerror", (error) => consoleErrors.push(`page error: ${error.message}`));

async function screenshot(name) {
  if (!artifacts) return;
  const file = path.join(artifacts, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  ok(`screenshot ${file}`);
}
const text = (selector) => page.locator(selector).first().innerText();

/// The same NDJSON request from Node: its lines, to count what the page must draw.
async function ndjsonFromNode(query) {
  const response = await fetch(`${options.url}/api/dashboard_data?${query}`, { headers: authHeaders });
  const body = await response.text();
  check(response.ok, `GET /api/dashboard_data?${query} from Node: ${response.status} ${body.slice(0, 300)}`);
  const lines = body.split("\n").filter((line) => line.length > 0);
  const last = JSON.parse(lines[lines.length - 1]);
  check(last.type === "summary", `the stream from Node ends with a summary line, not ${lines[lines.length - 1].slice(0, 300)}`);
  return { lines, bytes: Buffer.byteLength(body), pairs: lines.filter((line) => JSON.parse(line).type === "pair").length };
}

async function run() {
  // ---- load ----
  await page.goto(pageUrl, { waitUntil: "load" });
  await page.waitForFunction(() => document.getElementById("health-badge").textContent !== "…");
  ok(`page loaded, health: ${await text("#health-badge")}`);

  // ---- live ----
  if (options.expectWs) {
    await page.waitForFunction(() => document.getElementById("live-mode").textContent === "live: WebSocket");
    ok("live values arrive over the broadcast WebSocket");
  }
  await page.waitForSelector("#spreads-table tbody tr");
  const spreadsBefore = await text("#spreads-table tbody");
  await page.waitForFunction(
    (before) => document.querySelector("#spreads-table tbody").innerText !== before, spreadsBefore);
  ok(`live spreads change (${await text("#spreads-note")})`);
  await page.waitForSelector("#opps-table tbody tr");
  ok(`opportunities listed (${await text("#opps-note")})`);
  await page.waitForSelector("#feeds .feed.up");
  const feeds = await page.locator("#feeds .feed").count();
  ok(`${feeds} venues shown in feeds, at least one up`);
  await screenshot("live");

  // ---- history: streamed charts ----
  const query = new URLSearchParams({ date: options.date, min_cycles: options.minCycles });
  if (options.thresholdBp) query.set("threshold_bp", options.thresholdBp);
  if (options.maxPoints) query.set("max_points", options.maxPoints);
  const expected = await ndjsonFromNode(query);
  check(expected.pairs >= 2, `the day has at least two qualifying pairs (got ${expected.pairs})`);
  if (options.expectPairs !== null) {
    check(expected.pairs === options.expectPairs, `the day has ${options.expectPairs} qualifying pairs, the server streamed ${expected.pairs}`);
  }
  ok(`the server streams ${expected.pairs} pairs (${expected.bytes} bytes) for ${options.date}`);

  await page.click('button[data-tab="history"]');
  await page.fill("#h-date", options.date);
  await page.fill("#h-min-cycles", options.minCycles);
  if (options.thresholdBp) await page.selectOption("#h-threshold", String(Number(options.thresholdBp)));
  await page.fill("#h-max-points", options.maxPoints || "");

  // Throttle the browser's download so the response takes a few seconds to arrive whatever the
  // machine: the first chart must then be drawn while the response is still arriving.
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  const transferSeconds = 3;
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false, latency: 0, uploadThroughput: -1,
    downloadThroughput: Math.max(4096, Math.floor(expected.bytes / transferSeconds)),
  });
  let bytesAtFirstChart = null;
  let resolveFirstChart;
  const firstChart = new Promise((resolve) => { resolveFirstChart = resolve; });
  await page.exposeFunction("tickflowTestFirstChart", (bytesReceived) => {
    if (bytesAtFirstChart === null) bytesAtFirstChart = bytesReceived;
    resolveFirstChart();
  });
  await page.evaluate(() => {
    const charts = document.getElementById("charts");
    const observer = new MutationObserver(() => {
      if (charts.querySelector(".chart canvas")) {
        observer.disconnect();
        window.tickflowTestFirstChart(Number(document.getElementById("h-progress").dataset.bytes || 0));
      }
    });
    observer.observe(charts, { childList: true, subtree: true });
  });
  await page.click("#h-load");
  await firstChart;
  const chartsAtFirst = await page.locator("#charts .chart").count();
  // The page counts the bytes it has read (data-bytes on the progress line): the first chart
  // must be drawn while part of the response is still to come.
  check(bytesAtFirstChart !== null && bytesAtFirstChart > 0 && bytesAtFirstChart < expected.bytes,
    `the first chart was drawn only after the whole NDJSON response had arrived (not streamed): ${bytesAtFirstChart} of ${expected.bytes} bytes read`);
  ok(`first chart drawn while the response was still arriving (${chartsAtFirst} of ${expected.pairs} charts, ${bytesAtFirstChart} of ${expected.bytes} bytes read)`);
  await page.waitForFunction(() => ["done", "error", "cut"].includes(document.getElementById("h-progress").dataset.state));
  const state = await page.getAttribute("#h-progress", "data-state");
  check(state === "done", `the history stream ends with its summary, page says: ${await text("#h-progress")} / ${await text("#h-error").catch(() => "")}`);
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  const chartsMax = 48;
  const drawn = await page.locator("#charts .chart canvas").count();
  check(drawn === Math.min(expected.pairs, chartsMax), `${Math.min(expected.pairs, chartsMax)} charts drawn, found ${drawn}`);
  const pairsShown = Number(await page.getAttribute("#h-progress", "data-pairs"));
  check(pairsShown === expected.pairs, `the page counted ${pairsShown} pairs, the stream has ${expected.pairs}`);
  ok(`all ${expected.pairs} pairs received, ${drawn} charts drawn: ${await text("#h-progress")}`);
  await page.evaluate(() => window.scrollTo(0, 0));
  await screenshot("history");

  // ---- history: an error line, then a cut stream, after two real lines ----
  const firstTwo = expected.lines.slice(0, 2).join("\n") + "\n";
  const faults = [
    { name: "error line", body: firstTwo + JSON.stringify({ type: "error", api_version: 1, code: "history_error", message: "injected: cannot read part-3.parquet", pairs: 2 }) + "\n", state: "error", says: "injected: cannot read part-3.parquet" },
    { name: "cut stream", body: firstTwo + expected.lines[2].slice(0, Math.floor(expected.lines[2].length / 2)), state: "cut", says: "without its summary line" },
  ];
  for (const fault of faults) {
    await page.route("**/api/dashboard_data?**", (route) => route.fulfill({
      status: 200, contentType: "application/x-ndjson", body: fault.body,
    }));
    await page.click("#h-load");
    await page.waitForFunction((want) => document.getElementById("h-progress").dataset.state === want && document.getElementById("h-load").disabled === false, fault.state);
    const message = await text("#h-error");
    check(message.includes(fault.says), `${fault.name}: the page shows "${fault.says}", it shows: ${message}`);
    const kept = await page.locator("#charts .chart canvas").count();
    check(kept === 2, `${fault.name}: the two charts drawn before it stay (found ${kept})`);
    ok(`${fault.name} mid-stream shown, the 2 charts before it kept`);
    await page.unroute("**/api/dashboard_data?**");
  }
  await screenshot("history-error");

  // ---- memory ----
  await page.click('button[data-tab="memory"]');
  await page.waitForFunction(() => Number(document.getElementById("trend-chart").dataset.samples || 0) >= 2);
  await page.waitForSelector("#trend-chart canvas");
  await page.waitForSelector("#components-table tbody tr");
  const rss = await text("#rss-text");
  check(/MiB|GiB|KiB/.test(rss), `RSS against the budget is shown, got "${rss}"`);
  const components = await page.locator("#components-table tbody tr").count();
  ok(`memory: RSS ${rss}; ${components} components; trend of ${await page.getAttribute("#trend-chart", "data-samples")} samples`);
  await screenshot("memory");

  check(consoleErrors.length === 0, `console errors:\n${consoleErrors.join("\n")}`);
  ok("no console error");
}

let exitCode = 0;
try {
  await run();
  console.log("PASS");
} catch (error) {
  exitCode = 1;
  console.error(`FAIL: ${error instanceof CheckFailed ? error.message : error.stack || error.message}`);
  if (consoleErrors.length) console.error(`console errors seen:\n${consoleErrors.join("\n")}`);
  try { await screenshot("failure"); } catch (_) { /* the browser may be gone */ }
} finally {
  await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(exitCode);
