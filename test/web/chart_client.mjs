// Opens klined's chart page in Debian's chromium (headless, driven by puppeteer-core) and
// reports what it draws: the web integration test (test/integration/web_test.cc) runs it.
//
//   node test/web/chart_client.mjs --url 'http://127.0.0.1:PORT/?symbol=BTCUSDT&interval=1m' \
//       --screenshot out.png [--timeout-ms 30000] [--until-close 123.45] \
//       [--chromium /usr/bin/chromium]
//
// Prints one JSON line per phase to stdout:
//   {"phase":"loaded","bars":[{time,open,high,low,close}...],"liveMode":"ws"|"poll",
//    "stream":..,"status":..,"symbols":[picker],"intervals":[picker],"loadMs":n}
//     once window.klinedChart.ready resolved (history drawn, live source chosen); `time` is
//     the open time in UTC seconds;
//   {"phase":"moved","changed":bool,"last":{...},"liveMode":...,"waitedMs":n}
//     once the last bar differs from the one at load (with --until-close: once its close is
//     that number), or after --timeout-ms; the screenshot is saved then.
// Exit code 0 when the last bar moved, 3 when it did not in time, 1 on any error (the page's
// errors and console messages go to stderr).
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const out = { url: '', screenshot: '', timeoutMs: 30000, untilClose: undefined,
    chromium: process.env.KLINED_CHROMIUM || '/usr/bin/chromium',
    webDir: path.resolve(here, '../../web') };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`missing value for ${k}`);
    if (k === '--url') out.url = v;
    else if (k === '--screenshot') out.screenshot = v;
    else if (k === '--timeout-ms') out.timeoutMs = Number(v);
    else if (k === '--until-close') out.untilClose = Number(v);
    else if (k === '--chromium') out.chromium = v;
    else if (k === '--web-dir') out.webDir = path.resolve(v);
    else throw new Error(`unknown argument ${k}`);
  }
  if (!out.url || !out.screenshot) throw new Error('--url and --screenshot are required');
  if (!(out.timeoutMs > 0)) throw new Error('--timeout-ms must be > 0');
  return out;
}

const line = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const sameBar = (a, b) => JSON.stringify(a) === JSON.stringify(b);

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const require = createRequire(path.join(args.webDir, 'package.json'));
  const puppeteer = require('puppeteer-core');

  const browser = await puppeteer.launch({
    executablePath: args.chromium,
    headless: true,
    // Root (as CI runs) cannot use chromium's sandbox.
    args: [...(process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : []),
      '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check',
      '--window-size=1280,720'],
    defaultViewport: { width: 1280, height: 720 },
    timeout: 30000,
    // DevTools over a pipe: if this process dies (a test killing it), chromium sees the pipe
    // close and exits too, instead of running on in a process group of its own.
    pipe: true,
  });
  const closeAndExit = (code) => browser.close().finally(() => process.exit(code));
  process.on('SIGTERM', () => closeAndExit(143));
  process.on('SIGINT', () => closeAndExit(130));
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => process.stderr.write(`page error: ${e.message}\n`));
    // 'Failed to load resource' repeats the response lines below.
    page.on('console', (m) => {
      if (!m.text().startsWith('Failed to load resource')) {
        process.stderr.write(`page console.${m.type()}: ${m.text()}\n`);
      }
    });
    page.on('requestfailed', (r) =>
      process.stderr.write(`page request failed: ${r.url()} ${r.failure()?.errorText}\n`));
    // Not reported: the page's interval probes (limit=1; 400 for an interval the server does
    // not have) and its look at /ws (404 on a server without WebSocket).
    page.on('response', (r) => {
      const probe = (r.status() === 400 && r.url().endsWith('&limit=1')) ||
        (r.status() === 404 && r.url().endsWith('/ws'));
      if (r.status() >= 400 && !probe) {
        process.stderr.write(`page response ${r.status()}: ${r.url()}\n`);
      }
    });

    const t0 = Date.now();
    await page.goto(args.url, { waitUntil: 'load', timeout: 20000 });
    await page.waitForFunction(() => window.klinedChart !== undefined, { timeout: 10000 });
    const readyMs = 30000;
    const isReady = await page.evaluate((ms) => Promise.race([
      window.klinedChart.ready.then(() => true),
      new Promise((resolve) => setTimeout(() => resolve(false), ms))]), readyMs);
    if (!isReady) {
      const status = await page.evaluate(() => document.getElementById('status').textContent);
      throw new Error(`klinedChart.ready did not resolve in ${readyMs} ms; page status: ${status}`);
    }
    const loaded = await page.evaluate(() => ({
      bars: window.klinedChart.bars(),
      liveMode: window.klinedChart.liveMode(),
      stream: window.klinedChart.stream(),
      status: document.getElementById('status').textContent,
      symbols: [...document.querySelectorAll('#symbol option')].map((o) => o.value),
      intervals: [...document.querySelectorAll('#interval option')].map((o) => o.value),
    }));
    line({ phase: 'loaded', loadMs: Date.now() - t0, ...loaded });

    const first = loaded.bars.length ? loaded.bars[loaded.bars.length - 1] : null;
    const start = Date.now();
    let last = first;
    let changed = false;
    while (Date.now() - start < args.timeoutMs) {
      last = await page.evaluate(() => {
        const b = window.klinedChart.bars();
        return b.length ? b[b.length - 1] : null;
      });
      changed = args.untilClose !== undefined ? last !== null && last.close === args.untilClose
        : !sameBar(last, first);
      if (changed) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const after = await page.evaluate(() => ({
      liveMode: window.klinedChart.liveMode(),
      bars: window.klinedChart.bars().length,
      status: document.getElementById('status').textContent,
    }));
    await page.screenshot({ path: args.screenshot });
    line({ phase: 'moved', changed, waitedMs: Date.now() - start, last, first, ...after });
    return changed ? 0 : 3;
  } finally {
    await browser.close();
  }
}

main().then((code) => process.exit(code), (e) => {
  process.stderr.write(`chart_client: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
