#!/usr/bin/env bash
# Installs klined as a systemd service: binary, config (never overwriting an existing one),
# secrets file template, unit, docs, the `klined` system user, then daemon-reload.
# Idempotent: run it again after every build to upgrade the binary and the unit.
#
#   scripts/install.sh [BUILD_DIR]     BUILD_DIR defaults to build (meson build directory)
#
# Environment:
#   DESTDIR=/path   stage under this root instead of / (packaging, tests): no user is created,
#                   nothing is chowned, systemd is not reloaded
#   PREFIX=/usr/local   where bin/klined and share/doc/klined go (the unit's ExecStart follows)
#
# After a first install: edit /etc/klined/klined.yaml and /etc/klined/env, then
#   klined --config /etc/klined/klined.yaml --check && systemctl enable --now klined
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${1:-build}
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
BIN_SRC="$BUILD_DIR/src/app/klined"
CONF_DIR=/etc/klined
UNIT_DIR=/etc/systemd/system
DOC_DIR="$PREFIX/share/doc/klined"

say() { echo "install: $*"; }
die() { echo "install: error: $*" >&2; exit 1; }

[ -x "$BIN_SRC" ] || die "$BIN_SRC missing: build first (meson setup $BUILD_DIR && ninja -C $BUILD_DIR)"
[ -f systemd/klined.service ] || die "systemd/klined.service missing (run from a klined checkout)"

live=0  # installing into the running system (not staging into DESTDIR)
[ -z "$DESTDIR" ] && live=1
if [ "$live" = 1 ] && [ "$(id -u)" != 0 ]; then
  die "installing into / needs root (or set DESTDIR to stage elsewhere)"
fi

# 1. The system user and group: no home, no shell, no login.
if [ "$live" = 1 ]; then
  if ! getent group klined >/dev/null; then
    groupadd --system klined
    say "created group klined"
  fi
  if ! getent passwd klined >/dev/null; then
    nologin=$(command -v nologin || echo /usr/sbin/nologin)
    useradd --system --gid klined --no-create-home --home-dir /nonexistent \
      --shell "$nologin" --comment "klined daemon" klined
    say "created user klined"
  fi
else
  say "DESTDIR set: not creating the klined user (create it on the target: useradd --system klined)"
fi

# 2. The binary. install(1) unlinks the old file first, so a running klined keeps its copy.
install -D -m 0755 "$BIN_SRC" "$DESTDIR$PREFIX/bin/klined"
say "installed $DESTDIR$PREFIX/bin/klined ($("$DESTDIR$PREFIX/bin/klined" --version))"

# 3. Config: root-owned, readable by the klined group; an existing file is never touched.
install -d -m 0750 "$DESTDIR$CONF_DIR"
if [ -e "$DESTDIR$CONF_DIR/klined.yaml" ]; then
  install -m 0640 config/klined.yaml "$DESTDIR$CONF_DIR/klined.yaml.dist"
  say "kept existing $DESTDIR$CONF_DIR/klined.yaml (the shipped defaults are in klined.yaml.dist)"
else
  install -m 0640 config/klined.yaml "$DESTDIR$CONF_DIR/klined.yaml"
  say "installed $DESTDIR$CONF_DIR/klined.yaml (edit it: brokers, redis, mysql)"
fi
# Secrets file read by systemd (EnvironmentFile=) before it drops to the klined user.
if [ ! -e "$DESTDIR$CONF_DIR/env" ]; then
  (
    umask 077
    cat >"$DESTDIR$CONF_DIR/env" <<'ENV'
# Secrets for klined, read by systemd (EnvironmentFile=-/etc/klined/env). Keep mode 0600.
# Set and non-empty, these override mysql.password, redis.password and redis.user in
# klined.yaml.
#KLINED_MYSQL_PASSWORD=
#KLINED_REDIS_PASSWORD=
#KLINED_REDIS_USER=
ENV
  )
  say "installed $DESTDIR$CONF_DIR/env (secrets template, mode 0600)"
fi
if [ "$live" = 1 ]; then
  chown root:klined "$CONF_DIR" "$CONF_DIR/klined.yaml"
  if [ -e "$CONF_DIR/klined.yaml.dist" ]; then chown root:klined "$CONF_DIR/klined.yaml.dist"; fi
  chown root:root "$CONF_DIR/env"
  chmod 0600 "$CONF_DIR/env"
fi

# 4. The unit, with ExecStart following PREFIX.
install -d -m 0755 "$DESTDIR$UNIT_DIR"
sed "s#/usr/local/bin/klined#$PREFIX/bin/klined#g; s#/usr/local/share/doc/klined#$DOC_DIR#g" \
  systemd/klined.service >"$DESTDIR$UNIT_DIR/klined.service.tmp"
chmod 0644 "$DESTDIR$UNIT_DIR/klined.service.tmp"
mv -f "$DESTDIR$UNIT_DIR/klined.service.tmp" "$DESTDIR$UNIT_DIR/klined.service"
say "installed $DESTDIR$UNIT_DIR/klined.service"

# 5. Operator docs: metrics reference, example alert rules and Grafana dashboard.
install -d -m 0755 "$DESTDIR$DOC_DIR"
install -m 0644 docs/metrics.md config/alerts.yml config/grafana-dashboard.json \
  config/klined.yaml "$DESTDIR$DOC_DIR/"
say "installed docs in $DESTDIR$DOC_DIR"

# 6. Validate the config in place (a warning only: a fresh default config may point nowhere).
if ! "$DESTDIR$PREFIX/bin/klined" --config "$DESTDIR$CONF_DIR/klined.yaml" --check >/dev/null; then
  say "warning: $DESTDIR$CONF_DIR/klined.yaml does not pass --check; fix it before starting"
fi

# 7. Tell systemd.
if [ "$live" = 1 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  systemctl daemon-reload
  say "systemctl daemon-reload done; start with: systemctl enable --now klined"
  if systemctl is-active --quiet klined; then
    say "klined is running the old binary: systemctl restart klined"
  fi
else
  say "systemd not reloaded (DESTDIR set or systemd not running)"
fi
