#!/usr/bin/env bash
# The main job: a local stack on loopback in a temp dir — redis-server, the Kafka test broker
# (librdkafka's mock cluster), klined — fed by klined-tradegen, with live candles shown in the
# terminal through klinectl. Ctrl-C stops and cleans up everything it started.
#   DEMO_SECONDS=N   stop by itself after N seconds (default: run until Ctrl-C)
#   DEMO_SYMBOLS=N   symbols to generate (default 20)
#   DEMO_RATE=R      trades per second (default 2000; bursts and quiet periods around it)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
for bin in src/app/klined src/tools/testbroker/klined-testbroker \
           src/tools/tradegen/klined-tradegen src/tools/klinectl/klinectl; do
  [ -x "$BUILD/$bin" ] || { echo "demo: $BUILD/$bin missing: build first (make)"; exit 1; }
done
KLINECTL="$BUILD/src/tools/klinectl/klinectl"
# The chart page's library (web/vendor/, from the pinned npm packages). Without the registry
# the demo still runs; only the chart page lacks its library.
./scripts/npm-install.sh || echo "demo: WARNING: npm packages not installed: the chart page cannot draw"

TMP=$(mktemp -d /tmp/klined-demo.XXXXXX)
PIDS=()
cleanup() {
  trap - EXIT INT TERM
  # Newest first, each waited for (at most 10 s): the generator delivers and klined drains
  # (flush to Redis, commit offsets) while the broker and Redis are still up.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill "${PIDS[i]}" 2>/dev/null || continue
    for _ in $(seq 100); do kill -0 "${PIDS[i]}" 2>/dev/null || break; sleep 0.1; done
    kill -9 "${PIDS[i]}" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$TMP"
  echo "demo: stopped and cleaned up"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
# Children run in sessions of their own (setsid): Ctrl-C reaches only this script, which
# then stops them in order; a terminal SIGINT to all at once would kill the broker before
# klined could drain into it.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REDIS_PORT=$(free_port)
METRICS_PORT=$(free_port)
# The market-data API: 8080 when free (DEMO_API_PORT overrides), else any free port.
API_PORT=${DEMO_API_PORT:-8080}
(exec 3<>/dev/tcp/127.0.0.1/$API_PORT) 2>/dev/null && API_PORT=$(free_port)

setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP" --save "" --appendonly no \
  --daemonize no >"$TMP/redis.log" 2>&1 &
PIDS+=($!)

setsid "$BUILD/src/tools/testbroker/klined-testbroker" --topic trades:4 --topic trades-dlq:1 \
  >"$TMP/broker.out" 2>"$TMP/broker.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q BOOTSTRAP= "$TMP/broker.out" 2>/dev/null && break; sleep 0.1; done
BOOTSTRAP=$(sed -n 's/^BOOTSTRAP=//p' "$TMP/broker.out")
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# MariaDB in a temp datadir, on loopback: all history lands in its `kline` table.
MYSQL_PORT=$(free_port)
mkdir -p "$TMP/mysql"
mariadb-install-db --no-defaults --datadir="$TMP/mysql" --user=root \
  --auth-root-authentication-method=normal >"$TMP/mysql-install.log" 2>&1
setsid mariadbd --no-defaults --datadir="$TMP/mysql" --user=root --bind-address=127.0.0.1 \
  --port="$MYSQL_PORT" --socket="$TMP/mysql.sock" --skip-name-resolve \
  >"$TMP/mysql.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do mariadb --no-defaults -S "$TMP/mysql.sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done
mariadb --no-defaults -S "$TMP/mysql.sock" -uroot -e "
  CREATE DATABASE IF NOT EXISTS klined;
  CREATE USER IF NOT EXISTS 'klined'@'127.0.0.1' IDENTIFIED BY 'demo';
  GRANT ALL ON klined.* TO 'klined'@'127.0.0.1';"

cat >"$TMP/klined.yaml" <<YAML
kafka:
  brokers: "$BOOTSTRAP"
  topic: trades
  group: klined-demo
  dead_letter_topic: trades-dlq
  properties:
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "500"
redis:
  address: "127.0.0.1:$REDIS_PORT"
mysql:
  host: 127.0.0.1
  port: $MYSQL_PORT
  user: klined
  password: demo
  database: klined
  persist_interval_ms: 2000
intervals: [1s, 1m, 5m, 1h, 1d]
metrics:
  listen: "127.0.0.1:$METRICS_PORT"
api:
  listen: "127.0.0.1:$API_PORT"
  web_root: "$PWD/web"
YAML
setsid "$BUILD/src/app/klined" --config "$TMP/klined.yaml" 2>"$TMP/klined.log" &
PIDS+=($!)

# Realistic trades: Zipf popularity over the symbols (BTCUSDT busiest), random-walk prices
# with each symbol's tick size, bursts and quiet periods, keyed by symbol.
setsid "$BUILD/src/tools/tradegen/klined-tradegen" --brokers "$BOOTSTRAP" --topic trades \
  --symbols "${DEMO_SYMBOLS:-20}" --rate "${DEMO_RATE:-2000}" --seed "$RANDOM" \
  2>"$TMP/tradegen.log" &
PIDS+=($!)

echo "demo: redis 127.0.0.1:$REDIS_PORT, mariadb 127.0.0.1:$MYSQL_PORT, kafka $BOOTSTRAP, metrics http://127.0.0.1:$METRICS_PORT/metrics"
echo "demo: chart page: http://127.0.0.1:$API_PORT/"
echo "demo: market-data API (Binance REST, docs/api.md): http://127.0.0.1:$API_PORT/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=5"
echo "demo: logs in $TMP; Ctrl-C to stop"
echo "demo: try: $KLINECTL --redis 127.0.0.1:$REDIS_PORT candles ETHUSDT 1s --limit 10"
start=$(date +%s)
while true; do
  sleep 2
  echo
  echo "==== $(date -u +%H:%M:%S) ========================================================"
  "$KLINECTL" --redis "127.0.0.1:$REDIS_PORT" candles BTCUSDT 1m --limit 5 2>&1 || true
  echo "candles in MySQL: $(mariadb --no-defaults -S "$TMP/mysql.sock" -uroot -N -e \
    'SELECT COUNT(*) FROM klined.kline' 2>/dev/null || echo '?'), lease held: $(curl -s \
    "127.0.0.1:$METRICS_PORT/metrics" | awk '/^klined_lease_held/ {print $2}')"
  echo "REST /api/v3/ticker/price?symbol=BTCUSDT: $(curl -s "127.0.0.1:$API_PORT/api/v3/ticker/price?symbol=BTCUSDT")"
  echo "current 1m candles of the next busiest symbols:"
  for s in ETHUSDT BNBUSDT SOLUSDT XRPUSDT; do
    "$KLINECTL" --redis "127.0.0.1:$REDIS_PORT" candles "$s" 1m --limit 1 2>/dev/null \
      | sed -n "2s/^/symbol  /p;3s/^/$s  /p" || true
  done | awk 'NR == 1 || $1 != "symbol"' | column -t | sed 's/^/  /'
  echo "symbols: $("$KLINECTL" --redis "127.0.0.1:$REDIS_PORT" symbols 2>/dev/null | wc -l)," \
       "trades applied: $(curl -s "127.0.0.1:$METRICS_PORT/metrics" | awk '/^klined_trades_applied_total/ {s+=$2} END {print s+0}')"
  if [ -n "${DEMO_SECONDS:-}" ] && (( $(date +%s) - start >= DEMO_SECONDS )); then break; fi
done
