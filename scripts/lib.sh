# Shared helpers for scripts/*: installing what is missing and running
# throwaway MariaDB servers. Sourced, not run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# apt-get install the named packages, without starting their services.
apt_install() {
  [ "$(id -u)" = 0 ] || die "installing $* needs root (or install them yourself: apt-get install $*)"
  log "installing $*"
  local blocker=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    blocker=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' > "$blocker"; chmod +x "$blocker"
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  [ -n "$blocker" ] && rm -f "$blocker"
  return 0
}

ensure_deps() {
  local need=()
  [ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null || need+=(mariadb-server)
  command -v mariadb >/dev/null || need+=(mariadb-client)
  command -v mariadb-install-db >/dev/null || [ -x /usr/bin/mariadb-install-db ] || need+=(mariadb-server)
  # The JetStream tests start their own nats-server.
  [ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null || need+=(nats-server)
  # The network-fault tests make namespaces, veth pairs and DROP rules.
  [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || command -v ip >/dev/null || need+=(iproute2)
  [ -x /usr/sbin/iptables ] || [ -x /sbin/iptables ] || command -v iptables >/dev/null || need+=(iptables)
  # promtool (in Debian's prometheus package; its service is not started)
  # checks and unit-tests docker/prometheus/alerts.yml and the dashboard's
  # queries.
  command -v promtool >/dev/null || need+=(prometheus)
  if [ ${#need[@]} -gt 0 ]; then apt_install "${need[@]}"; fi
  if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null || die "cargo not found: install Rust 1.89+ with rustup (https://rustup.rs)"
}

MARIADBD="$(command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd)"

# A port nothing listens on (bash's /dev/tcp: no extra tools needed) and
# not handed out before by this script: several are taken before anything
# binds them. ($$ is the script's PID, also inside $(...).)
free_port() {
  local p used="/tmp/rowcast-ports.$$"
  while :; do
    p=$((20000 + RANDOM % 30000))
    grep -qx "$p" "$used" 2>/dev/null && continue
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    echo "$p" >>"$used"
    echo "$p"
    return
  done
}

# start_db DIR PORT SERVER_ID [extra mariadbd flags...]: a private server.
start_db() {
  local dir=$1 port=$2 id=$3; shift 3
  mkdir -p "$dir/tmp"
  mariadb-install-db --no-defaults --user=root --datadir="$dir/data" \
    --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 \
    || die "mariadb-install-db failed, see $dir/install.log"
  "$MARIADBD" --no-defaults --datadir="$dir/data" --port="$port" --bind-address=127.0.0.1 \
    --socket="$dir/sock" --pid-file="$dir/pid" --log-error="$dir/err.log" --tmpdir="$dir/tmp" --user=root \
    --server-id="$id" --innodb-buffer-pool-size=128M "$@" >/dev/null 2>&1 &
  for _ in $(seq 1 300); do
    mariadb --no-defaults -h127.0.0.1 -P"$port" -uroot -e 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "mariadbd on port $port did not start, see $dir/err.log"
}

stop_db() {
  local dir=$1
  [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null || true
}

sql() { local port=$1; shift; mariadb --no-defaults -h127.0.0.1 -P"$port" -uroot "$@"; }
