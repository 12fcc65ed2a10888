#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tuning integration test (Optuna's shared RDB storage).
#
#   .ci/postgres.sh start STATE_DIR   initdb + pg_ctl start on a free port; prints the database URL last
#   .ci/postgres.sh stop STATE_DIR    stops the cluster and deletes its data
#
# PostgreSQL refuses to run as root: as root the cluster belongs to the `postgres` user (created by Debian's
# postgresql package) and lives in its own /tmp folder, because pytest's temp folders are private to root.
set -euo pipefail

action=${1:?usage: postgres.sh start|stop STATE_DIR}
state=${2:?usage: postgres.sh start|stop STATE_DIR}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [[ -z "$bin" || ! -x "$bin/initdb" ]]; then
  echo "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt-get install -y postgresql)" >&2
  exit 2
fi

as_owner() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$action" in
  start)
    mkdir -p "$state"
    data=$(mktemp -d /tmp/finmlops-pg.XXXXXX)
    [[ $(id -u) -eq 0 ]] && chown postgres: "$data"
    echo "$data" > "$state/datadir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    user=$([[ $(id -u) -eq 0 ]] && echo postgres || id -un)
    as_owner "$bin/initdb" -D "$data/db" -U "$user" --auth=trust -E UTF8 >"$state/initdb.log" 2>&1 \
      || { cat "$state/initdb.log" >&2; exit 1; }
    as_owner "$bin/pg_ctl" -D "$data/db" -l "$data/server.log" -w -t 60 \
      -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
      || { cat "$data/server.log" >&2; exit 1; }
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$user" finmlops
    echo "postgresql://$user@127.0.0.1:$port/finmlops"
    ;;
  stop)
    data=$(cat "$state/datadir")
    as_owner "$bin/pg_ctl" -D "$data/db" -m fast -w stop >/dev/null || true
    rm -rf "$data"
    ;;
  *)
    echo "unknown action $action: use start or stop" >&2
    exit 2
    ;;
esac
