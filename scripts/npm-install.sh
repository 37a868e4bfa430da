#!/usr/bin/env bash
# Installs web/'s npm packages exactly as web/package-lock.json pins them (`npm ci`, never
# `npm install`: the lock file is the pin) and copies lightweight-charts' standalone
# production build to web/vendor/, which the chart page loads
# (/vendor/lightweight-charts.standalone.production.js). The test-only clients (ccxt,
# puppeteer-core) are devDependencies and come along: the web integration tests run them.
# Idempotent and fast when already installed: a stamp of the lock file (and node's version)
# in web/node_modules says what is there. Install scripts are not run (--ignore-scripts): no
# package needs one here (ccxt's postinstall only prints a banner it fetches from the
# network; bufferutil ships prebuilt binaries and a JavaScript fallback).
# Exits non-zero with a clear message when node/npm are missing or the registry is
# unreachable.
set -euo pipefail
cd "$(dirname "$0")/../web"

for tool in node npm; do
  command -v "$tool" >/dev/null || {
    echo "npm-install: $tool not found: run scripts/install-deps.sh (Debian's nodejs and npm)" >&2
    exit 1
  }
done

VENDOR_FILE=lightweight-charts.standalone.production.js
STAMP=node_modules/.klined-lock-stamp
want="$(sha256sum package-lock.json | cut -d' ' -f1) node $(node --version)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -f "vendor/$VENDOR_FILE" ] &&
   cmp -s "node_modules/lightweight-charts/dist/$VENDOR_FILE" "vendor/$VENDOR_FILE"; then
  echo "npm-install: web/node_modules matches package-lock.json"
  exit 0
fi

echo "npm-install: npm ci in web/ (node $(node --version), npm $(npm --version))"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --prefer-offline: tarballs already in npm's cache are not fetched again (the lock file's
# integrity hashes check them either way).
if ! npm ci --ignore-scripts --no-audit --no-fund --prefer-offline --fetch-retries=1 \
     --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=10000 --fetch-timeout=60000 \
     >"$log" 2>&1; then
  tail -n 15 "$log" >&2
  registry=$(npm config get registry 2>/dev/null || echo "the npm registry")
  if grep -qiE 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|network|socket hang up|request to .* failed' "$log" ||
     ! timeout 30 npm ping >/dev/null 2>&1; then
    echo "npm-install: FAILED: the npm registry ($registry) is unreachable, and web/'s" \
         "packages are not all in npm's cache; connect to it (or set npm's registry /" \
         "proxy config) and run scripts/npm-install.sh again" >&2
  else
    echo "npm-install: FAILED: npm ci in web/ failed (output above)" >&2
  fi
  exit 1
fi

mkdir -p vendor
cp "node_modules/lightweight-charts/dist/$VENDOR_FILE" "vendor/$VENDOR_FILE.tmp"
mv "vendor/$VENDOR_FILE.tmp" "vendor/$VENDOR_FILE"
echo "$want" >"$STAMP"
echo "npm-install: installed $(node -p 'Object.keys(require("./package-lock.json").packages).length - 1') packages; vendor/$VENDOR_FILE copied"
