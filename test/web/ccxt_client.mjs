// ccxt's `binance` class against klined, unchanged but for where it sends its requests: the
// web integration test (test/integration/web_test.cc) runs it and compares what it prints
// with the independent candle computation.
//
//   node test/web/ccxt_client.mjs --base http://127.0.0.1:PORT --symbol BTC/USDT \
//       [--timeframe 1m] [--page-limit 7]
//
// Loads the markets, pages fetchOHLCV forward from since=0 (page-limit candles a call, the
// next since = the last open time + 1, until a page comes back short), calls fetchTicker,
// and prints one JSON document to stdout:
//   {"ccxt": version, "markets": [unified symbols], "market": {...}, "pages": n,
//    "ohlcv": [[t, o, h, l, c, v], ...], "ticker": {...}, "requests": [paths asked for]}
// Any exception: the error on stderr, exit code 1.
//
// What the binance class needs pointed at klined (from its source, js/src/binance.js):
// - urls.api.public: every spot market-data call (exchangeInfo, klines, ticker/24hr) is
//   `publicGet...` on it; the `api` base URLs of the other sections (sapi, fapi*, dapi*,
//   eapi*, papi, v1, private) are only used by calls this client does not make, so they are
//   pointed at klined too (under a path it answers 404), so that a call that strays there
//   fails loudly instead of reaching Binance.
// - options.fetchMarkets.types = ['spot']: by default loadMarkets also asks the USD-M
//   (fapi/v1/exchangeInfo) and COIN-M (dapi/v1/exchangeInfo) futures endpoints, which klined
//   does not serve.
// - agent: an http.Agent. In node ccxt sends every request through an https.Agent of its own
//   unless `agent` is set, and node refuses an https agent for an http: URL; klined serves
//   plain HTTP (TLS is a reverse proxy's job).
// fetchCurrencies needs credentials (sapi) and is skipped by ccxt itself without them.
import http from 'node:http';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const out = { base: '', symbol: 'BTC/USDT', timeframe: '1m', pageLimit: 7,
    webDir: path.resolve(here, '../../web') };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`missing value for ${k}`);
    if (k === '--base') out.base = v.replace(/\/+$/, '');
    else if (k === '--symbol') out.symbol = v;
    else if (k === '--timeframe') out.timeframe = v;
    else if (k === '--page-limit') out.pageLimit = Number(v);
    else if (k === '--web-dir') out.webDir = path.resolve(v);
    else throw new Error(`unknown argument ${k}`);
  }
  if (!out.base) throw new Error('--base http://HOST:PORT is required');
  if (!(out.pageLimit >= 1 && out.pageLimit <= 1000)) throw new Error('--page-limit 1..1000');
  return out;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  // The packages live in web/node_modules (scripts/npm-install.sh), not beside this file.
  const require = createRequire(path.join(args.webDir, 'package.json'));
  const ccxt = require('ccxt');

  const api = `${args.base}/api/v3`;
  const elsewhere = `${args.base}/not-klined`;  // 404 for every call klined does not serve
  const urlsApi = {};
  for (const name of Object.keys(new ccxt.binance().urls.api)) urlsApi[name] = elsewhere;
  urlsApi.public = api;
  const exchange = new ccxt.binance({
    urls: { api: urlsApi },
    options: { fetchMarkets: { types: ['spot'] } },
    agent: new http.Agent({ keepAlive: true }),
    timeout: 10000,
  });

  const requests = [];
  const fetchImpl = exchange.fetch.bind(exchange);
  exchange.fetch = (url, method, headers, body) => {
    requests.push(url.startsWith(args.base) ? url.slice(args.base.length) : url);
    return fetchImpl(url, method, headers, body);
  };

  const markets = await exchange.loadMarkets();
  const market = exchange.market(args.symbol);

  const ohlcv = [];
  let pages = 0;
  let since = 0;
  for (;;) {
    const rows = await exchange.fetchOHLCV(args.symbol, args.timeframe, since, args.pageLimit);
    ++pages;
    ohlcv.push(...rows);
    if (rows.length < args.pageLimit) break;
    since = rows[rows.length - 1][0] + 1;
    if (pages > 10000) throw new Error('paging does not end');
  }

  const ticker = await exchange.fetchTicker(args.symbol);
  delete ticker.info;

  process.stdout.write(JSON.stringify({
    ccxt: ccxt.version,
    markets: Object.keys(markets).sort(),
    market: { id: market.id, symbol: market.symbol, base: market.base, quote: market.quote,
      type: market.type, spot: market.spot, active: market.active },
    pages,
    ohlcv,
    ticker,
    requests,
  }) + '\n');
}

main().catch((e) => {
  process.stderr.write(`ccxt_client: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
