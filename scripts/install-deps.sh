#!/usr/bin/env bash
# Installs every Debian package klined's build, tests, benchmarks and demo need, including
# every tool the scripts, the Makefile and the tests call that a minimal Debian 12 lacks
# (column: bsdextrautils, openssl, clang-format, curl, kcat, wrk for bench/api_bench, ...); the ops test
# 'install-deps.sh installs every tool' checks the list. nodejs, npm and chromium: the chart
# page's npm packages (scripts/npm-install.sh) and the web tests' clients (ccxt, puppeteer-core
# driving Debian's /usr/bin/chromium); Debian 12's node is 18, which web/package.json's pins
# support.
# Idempotent and fast when everything is present: apt is only called for what is missing. A
# name an installed package provides counts as present (NodeSource's nodejs provides npm and
# conflicts with Debian's).
set -euo pipefail

PACKAGES=(
  build-essential g++ meson ninja-build pkg-config git
  librdkafka-dev libhiredis-dev libmariadb-dev libconcurrentqueue-dev libabsl-dev
  libyaml-cpp-dev prometheus-cpp-dev doctest-dev libbenchmark-dev libsystemd-dev libjemalloc-dev
  libboost-dev
  redis-server redis-tools mariadb-server mariadb-client
  clang libclang-rt-14-dev llvm clang-format
  python3 python3-yaml curl procps iproute2 systemd kcat openssl bsdextrautils wrk
  nodejs npm chromium
)

# What the installed packages provide, one name a line.
provided=$(dpkg-query -W -f='${db:Status-Abbrev} ${Provides}\n' 2>/dev/null |
  awk '$1 == "ii" { $1 = ""; print }' | tr ',' '\n' | sed 's/([^)]*)//g; s/:[a-z0-9]*//; s/ //g' |
  sort -u)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
  grep -qxF "$p" <<<"$provided" && continue
  missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# The packaged redis/mariadb services are not used (tests and the demo start their own servers
# on loopback in temp dirs); policy-rc.d keeps apt from starting them where that is possible.
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
