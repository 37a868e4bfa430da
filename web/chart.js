// klined's chart page: candles of one symbol and interval, history from REST, live from the
// WebSocket.
//
// DESIGN
// - History: GET api/v3/klines?symbol=S&interval=I&limit=1000 (the newest 1000 candles, the
//   current one last), drawn with lightweight-charts' candlestick series plus a volume
//   histogram. Times are the candles' open times (UTC seconds, as the library wants).
// - Live: one WebSocket to ws://<host>/ws, SUBSCRIBE <symbol lower case>@kline_<interval>;
//   each kline event updates the bar with open time k.t (series.update; a late trade's x:true
//   event for an older open time is a historical update). The socket is reopened with
//   exponential backoff (0.5 s .. 30 s, jittered) when it drops; after a reconnect the
//   history is read again, so nothing missed while it was down stays missing.
// - Fallback: while no socket is open, the page polls api/v3/klines?limit=2 every 2 s (the
//   previous and the current candle), so it keeps moving. A server without WebSocket support
//   answers 404 on /ws (a plain GET tells, since a browser's WebSocket hides the status):
//   then polling is the live mode and the socket is tried again only once a minute.
// - Paths are relative to the page, so it also works behind a reverse proxy under a prefix.
// - For tests: window.klinedChart = { bars(), ready, liveMode(), stream() }.
(function () {
  'use strict';

  // Binance's intervals; the picker shows those the server answers (its `intervals` config).
  const INTERVALS = ['1s', '1m', '3m', '5m', '15m', '30m', '1h', '2h', '4h', '6h', '8h', '12h',
    '1d', '3d', '1w', '1M'];
  const HISTORY_LIMIT = 1000;
  const POLL_MS = 2000;
  const WS_BACKOFF_MIN_MS = 500;
  const WS_BACKOFF_MAX_MS = 30000;
  const NO_WS_RETRY_MS = 60000;   // a server that answered 404 on /ws: look again this often
  const SUBSCRIBE_ACK_MS = 3000;  // how long `ready` waits for the SUBSCRIBE reply
  const SYMBOLS_RETRY_MS = 2000;  // no symbol known yet: ask exchangeInfo again
  const LIVE_DECIDE_MS = 5000;    // `ready` waits at most this long for the socket
  const MAX_PENDING = 10000;      // live bars held while the history loads

  const $ = (id) => document.getElementById(id);
  const symbolSelect = $('symbol');
  const intervalSelect = $('interval');
  const statusEl = $('status');
  const legendEl = $('legend');

  const state = {
    symbol: '',
    interval: '',
    generation: 0,       // bumped on every symbol/interval change; stale answers are dropped
    loading: true,       // history being (re)read: live bars wait in `pending`
    pending: [],
    mode: 'poll',        // 'ws' while a subscribed socket is open, else 'poll'
    ws: null,
    wsOpen: false,
    wsEverOpened: false,
    wsBackoff: WS_BACKOFF_MIN_MS,
    wsTimer: 0,
    noWs: false,         // the server answered 404 on /ws
    pollTimer: 0,
    polling: false,
    nextId: 1,
    subscribeId: 0,      // id of the SUBSCRIBE in flight for the current stream
    onLiveDecided: null, // resolves `ready`'s live part (first socket open+ack, or fallback)
    precision: 2,
  };

  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.classList.toggle('error', Boolean(isError));
  }

  if (typeof LightweightCharts === 'undefined') {
    setStatus('vendor/lightweight-charts.standalone.production.js is missing: run ' +
      'scripts/npm-install.sh', true);
    const failed = Promise.reject(new Error('lightweight-charts not loaded'));
    failed.catch(() => {});
    window.klinedChart = { bars: () => [], ready: failed, liveMode: () => 'poll',
      stream: () => '' };
    return;
  }

  // ---- the chart ----------------------------------------------------------------------
  const chart = LightweightCharts.createChart($('chart'), {
    autoSize: true,
    layout: { background: { color: '#131722' }, textColor: '#d1d4dc' },
    grid: { vertLines: { color: '#1e222d' }, horzLines: { color: '#1e222d' } },
    timeScale: { timeVisible: true, secondsVisible: false, borderColor: '#2a2e39',
      barSpacing: 8, maxBarSpacing: 24, rightOffset: 4 },
    rightPriceScale: { borderColor: '#2a2e39' },
    crosshair: { mode: LightweightCharts.CrosshairMode.Normal },
  });
  const candles = chart.addSeries(LightweightCharts.CandlestickSeries, {
    upColor: '#26a69a', downColor: '#ef5350', borderVisible: false,
    wickUpColor: '#26a69a', wickDownColor: '#ef5350',
  });
  const volume = chart.addSeries(LightweightCharts.HistogramSeries, {
    priceFormat: { type: 'volume' }, priceScaleId: 'volume', lastValueVisible: false,
    priceLineVisible: false,
  });
  chart.priceScale('volume').applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });

  // Decimal strings (exact) to chart numbers; the series keeps the numbers only.
  function barOf(t, o, h, l, c) {
    return { time: t / 1000, open: Number(o), high: Number(h), low: Number(l), close: Number(c) };
  }
  function volumeOf(t, o, c, v) {
    return { time: t / 1000, value: Number(v),
      color: Number(c) >= Number(o) ? 'rgba(38,166,154,0.45)' : 'rgba(239,83,80,0.45)' };
  }
  // A REST row [t, "o", "h", "l", "c", "v", T, "q", n, "V", "Q", "0"].
  function liveOfRow(r) {
    return { bar: barOf(r[0], r[1], r[2], r[3], r[4]), vol: volumeOf(r[0], r[1], r[4], r[5]) };
  }
  // A WebSocket kline event's k.
  function liveOfKline(k) {
    return { bar: barOf(k.t, k.o, k.h, k.l, k.c), vol: volumeOf(k.t, k.o, k.c, k.v) };
  }

  function fractionDigits(s) {
    const dot = String(s).indexOf('.');
    return dot < 0 ? 0 : String(s).length - dot - 1;
  }
  function applyPrecision(rows) {
    let digits = 0;
    for (const r of rows) {
      for (let i = 1; i <= 4; ++i) digits = Math.max(digits, fractionDigits(r[i]));
    }
    digits = Math.min(Math.max(digits, 2), 10);
    if (digits === state.precision) return;
    state.precision = digits;
    candles.applyOptions({ priceFormat: { type: 'price', precision: digits,
      minMove: Math.pow(10, -digits) } });
  }

  function lastBar() {
    const d = candles.data();
    return d.length ? d[d.length - 1] : null;
  }

  // Puts one live candle on the chart: the current bar, a new one, or (a late trade's update)
  // an older bar still on the chart. Returns false when it cannot (older than the history).
  function applyLive(live) {
    if (state.loading) {
      // Bounded: a load takes one request; past the bound the oldest wait is dropped (the
      // history being read holds it).
      if (state.pending.push(live) > MAX_PENDING) state.pending.shift();
      return true;
    }
    const last = lastBar();
    try {
      if (!last || live.bar.time >= last.time) {
        candles.update(live.bar);
        volume.update(live.vol);
      } else {
        const first = candles.data()[0];
        if (live.bar.time < first.time) return false;
        candles.update(live.bar, true);
        volume.update(live.vol, true);
      }
    } catch (e) {
      console.warn('klined chart: update refused', live.bar, e);
      return false;
    }
    showLegend();
    return true;
  }

  function showLegend() {
    const b = lastBar();
    if (!b) {
      legendEl.textContent = '';
      return;
    }
    const f = (x) => x.toFixed(state.precision);
    const cls = b.close >= b.open ? 'up' : 'down';
    legendEl.innerHTML = '';
    const span = document.createElement('span');
    span.className = cls;
    span.textContent = `O ${f(b.open)} H ${f(b.high)} L ${f(b.low)} C ${f(b.close)}`;
    legendEl.append(span);
  }

  function showMode() {
    if (state.mode === 'ws') {
      setStatus('live: WebSocket');
    } else if (state.noWs) {
      setStatus('live: polling REST every 2 s (the server has no WebSocket)');
    } else {
      setStatus('live: polling REST every 2 s (WebSocket reconnecting)');
    }
  }

  // ---- REST ---------------------------------------------------------------------------
  async function getJson(path) {
    const r = await fetch(path, { cache: 'no-store' });
    const text = await r.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch (e) {
      throw new Error(`${path}: HTTP ${r.status}, not JSON`);
    }
    if (!r.ok) {
      const msg = body && body.msg ? `${body.msg} (${body.code})` : `HTTP ${r.status}`;
      const err = new Error(`${path}: ${msg}`);
      err.status = r.status;
      throw err;
    }
    return body;
  }

  function klinesPath(symbol, interval, limit) {
    return 'api/v3/klines?symbol=' + encodeURIComponent(symbol) + '&interval=' +
      encodeURIComponent(interval) + '&limit=' + limit;
  }

  // Reads the history of the current stream and draws it; live bars that came meanwhile
  // are applied after it.
  async function loadHistory() {
    const gen = state.generation;
    state.loading = true;
    let rows;
    try {
      rows = await getJson(klinesPath(state.symbol, state.interval, HISTORY_LIMIT));
    } catch (e) {
      // The chart keeps what it had; live bars go on being applied to it.
      if (gen === state.generation) state.loading = false;
      throw e;
    }
    if (gen !== state.generation) return false;
    applyPrecision(rows);
    candles.setData(rows.map((r) => liveOfRow(r).bar));
    volume.setData(rows.map((r) => liveOfRow(r).vol));
    state.loading = false;
    const pending = state.pending;
    state.pending = [];
    for (const live of pending) applyLive(live);
    showLegend();
    return true;
  }

  // ---- polling fallback -----------------------------------------------------------------
  function startPolling() {
    if (state.polling) return;
    state.polling = true;
    clearTimeout(state.pollTimer);
    state.pollTimer = setTimeout(pollOnce, POLL_MS);
  }
  function stopPolling() {
    state.polling = false;
    clearTimeout(state.pollTimer);
  }
  async function pollOnce() {
    if (!state.polling) return;
    const gen = state.generation;
    try {
      if (!state.loading) {
        const rows = await getJson(klinesPath(state.symbol, state.interval, 2));
        if (gen === state.generation && state.polling && rows.length) {
          const last = lastBar();
          // More than one bucket passed since the last poll: the rows do not join the
          // chart; read the history again rather than leave a gap.
          if (last && rows[0][0] / 1000 > last.time) {
            await loadHistory();
          } else {
            for (const r of rows) applyLive(liveOfRow(r));
          }
        }
      }
      if (state.mode === 'poll') showMode();
    } catch (e) {
      setStatus('polling: ' + e.message, true);
    }
    if (state.polling) state.pollTimer = setTimeout(pollOnce, POLL_MS);
  }

  // ---- WebSocket ------------------------------------------------------------------------
  function streamName() {
    return state.symbol.toLowerCase() + '@kline_' + state.interval;
  }
  function wsUrl() {
    const u = new URL('ws', window.location.href);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    return u.href;
  }
  function send(method, params) {
    if (!state.ws || !state.wsOpen) return 0;
    const id = state.nextId++;
    state.ws.send(JSON.stringify({ method, params, id }));
    return id;
  }
  function decideLive() {
    if (state.onLiveDecided) {
      const done = state.onLiveDecided;
      state.onLiveDecided = null;
      done();
    }
  }

  function connectWs() {
    clearTimeout(state.wsTimer);
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      wsFailed(null, false);
      return;
    }
    state.ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (state.ws !== ws) return;
      opened = true;
      state.wsOpen = true;
      state.noWs = false;
      state.wsBackoff = WS_BACKOFF_MIN_MS;
      if (state.wsEverOpened) console.info('klined chart: WebSocket open again');
      state.subscribeId = send('SUBSCRIBE', [streamName()]);
      const ackId = state.subscribeId;
      setTimeout(() => {
        if (state.ws === ws && state.subscribeId === ackId) goLive(ws);
      }, SUBSCRIBE_ACK_MS);
      if (state.wsEverOpened) {
        // Whatever changed while the socket was down: read the history again.
        loadHistory().catch((e) => setStatus(e.message, true));
      }
      state.wsEverOpened = true;
    };
    ws.onmessage = (ev) => {
      if (state.ws === ws) onWsMessage(ws, ev.data);
    };
    ws.onerror = () => {};  // a close event follows
    ws.onclose = () => {
      if (state.ws !== ws) return;
      wsFailed(ws, opened);
    };
  }

  // The socket is subscribed (or the reply is late): it is the live source now.
  function goLive(ws) {
    if (state.ws !== ws || !state.wsOpen) return;
    state.subscribeId = 0;
    state.mode = 'ws';
    stopPolling();
    showMode();
    decideLive();
  }

  function onWsMessage(ws, data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (msg && msg.stream !== undefined && msg.data !== undefined) msg = msg.data;  // /stream
    if (!msg || typeof msg !== 'object') return;
    if (msg.id !== undefined && msg.id !== null && msg.id === state.subscribeId) {
      if (msg.error) {
        // The server has a socket but refuses the stream: poll instead, retry later.
        console.warn('klined chart: SUBSCRIBE refused', msg.error);
        state.noWs = true;
        closeWs();
        startPolling();
        state.mode = 'poll';
        showMode();
        decideLive();
        clearTimeout(state.wsTimer);
        state.wsTimer = setTimeout(connectWs, NO_WS_RETRY_MS);
        return;
      }
      goLive(ws);
      return;
    }
    if (msg.e === 'kline' && msg.k && msg.k.s === state.symbol && msg.k.i === state.interval) {
      applyLive(liveOfKline(msg.k));
    }
  }

  function closeWs() {
    const ws = state.ws;
    state.ws = null;
    state.wsOpen = false;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close();
      } catch (e) { /* already closed */ }
    }
  }

  // The socket closed or never opened: poll meanwhile, and try again after a backoff (a
  // minute when the server has no /ws at all).
  async function wsFailed(ws, wasOpen) {
    closeWs();
    state.mode = 'poll';
    startPolling();
    let delay;
    let noWs = false;
    if (!wasOpen) {
      try {
        const r = await fetch('ws', { cache: 'no-store' });
        noWs = r.status === 404;
      } catch (e) {
        noWs = false;  // the server is unreachable: an ordinary reconnect
      }
    }
    state.noWs = noWs;
    if (noWs) {
      delay = NO_WS_RETRY_MS;
    } else {
      delay = state.wsBackoff * (0.5 + Math.random() / 2);
      state.wsBackoff = Math.min(state.wsBackoff * 2, WS_BACKOFF_MAX_MS);
    }
    showMode();
    decideLive();
    console.info(`klined chart: WebSocket ${wasOpen ? 'closed' : 'did not open'}` +
      `${noWs ? ' (404)' : ''}; polling REST, next try in ${Math.round(delay)} ms`);
    clearTimeout(state.wsTimer);
    state.wsTimer = setTimeout(connectWs, delay);
  }

  // ---- pickers and start ----------------------------------------------------------------
  function fillSelect(select, values, chosen) {
    select.innerHTML = '';
    for (const v of values) {
      const opt = document.createElement('option');
      opt.value = opt.textContent = v;
      select.append(opt);
    }
    select.value = chosen;
    select.disabled = false;
  }

  async function knownSymbols() {
    for (;;) {
      try {
        const info = await getJson('api/v3/exchangeInfo');
        const symbols = (info.symbols || []).map((s) => s.symbol).sort();
        if (symbols.length) return symbols;
        setStatus('no symbol has traded yet; waiting…');
      } catch (e) {
        setStatus(e.message, true);
      }
      await new Promise((r) => setTimeout(r, SYMBOLS_RETRY_MS));
    }
  }

  // The intervals the server has configured: those whose klines request is not refused.
  async function knownIntervals(symbol) {
    const answers = await Promise.all(INTERVALS.map((iv) =>
      getJson(klinesPath(symbol, iv, 1)).then(() => true, (e) => e.status !== 400)));
    const ok = INTERVALS.filter((iv, i) => answers[i]);
    return ok.length ? ok : ['1m'];
  }

  // Switches the chart to (symbol, interval): new subscription, history read again.
  async function show(symbol, interval) {
    const oldStream = state.symbol ? streamName() : '';
    state.generation++;
    state.symbol = symbol;
    state.interval = interval;
    state.pending = [];
    const params = new URLSearchParams(window.location.search);
    params.set('symbol', symbol);
    params.set('interval', interval);
    window.history.replaceState(null, '', '?' + params.toString());
    document.title = `${symbol} ${interval} · klined`;
    chart.applyOptions({ timeScale: { secondsVisible: interval === '1s' } });
    if (state.wsOpen) {
      if (oldStream) send('UNSUBSCRIBE', [oldStream]);
      state.subscribeId = send('SUBSCRIBE', [streamName()]);
    }
    if (await loadHistory()) {
      // A short series fills the width (bars at most 24 px); a long one shows its newest end.
      if (candles.data().length < 120) chart.timeScale().fitContent();
      else chart.timeScale().scrollToRealTime();
    }
  }

  let resolveReady;
  let rejectReady;
  const ready = new Promise((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  ready.catch(() => {});

  async function start() {
    const symbols = await knownSymbols();
    const params = new URLSearchParams(window.location.search);
    const wantSymbol = params.get('symbol');
    const symbol = symbols.includes(wantSymbol) ? wantSymbol
      : symbols.includes('BTCUSDT') ? 'BTCUSDT' : symbols[0];
    const intervals = await knownIntervals(symbol);
    const wantInterval = params.get('interval');
    const interval = intervals.includes(wantInterval) ? wantInterval
      : intervals.includes('1m') ? '1m' : intervals[0];
    fillSelect(symbolSelect, symbols, symbol);
    fillSelect(intervalSelect, intervals, interval);
    symbolSelect.onchange = () => show(symbolSelect.value, intervalSelect.value)
      .catch((e) => setStatus(e.message, true));
    intervalSelect.onchange = () => show(symbolSelect.value, intervalSelect.value)
      .catch((e) => setStatus(e.message, true));
    const liveDecided = new Promise((resolve) => { state.onLiveDecided = resolve; });
    await show(symbol, interval);
    startPolling();  // until the socket is subscribed
    showMode();
    setTimeout(decideLive, LIVE_DECIDE_MS);  // a socket that neither opens nor fails: polling
    connectWs();
    await liveDecided;
  }

  window.klinedChart = {
    // What the chart draws: [{time (open time, UTC seconds), open, high, low, close}].
    bars: () => candles.data().map((b) => ({ time: b.time, open: b.open, high: b.high,
      low: b.low, close: b.close })),
    ready,
    liveMode: () => state.mode,
    stream: () => streamName(),
  };

  start().then(() => resolveReady(), (e) => {
    setStatus(e.message, true);
    rejectReady(e);
  });
})();
