#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for tests and benchmarks, from Debian's packages.
#
#   scripts/pg.sh start DIR     initdb in DIR, start on a free loopback port, print the URL
#   scripts/pg.sh restart DIR   pg_ctl restart -m immediate (a crash, for the fault tests)
#   scripts/pg.sh stop DIR      stop it (the data stays in DIR until DIR is removed)
#   scripts/pg.sh tls DIR CERT KEY
#                               serve TLS with this certificate chain and key (PEM), and
#                               restart
#
# PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user
# that the Debian package creates. The server listens on 127.0.0.1 only, with trust
# authentication for the one user `gn`: nothing else can reach it.
set -euo pipefail
cmd=${1:?start, restart or stop}
dir=${2:?a directory}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bin" ]; then
  echo "PostgreSQL is not installed (apt-get install postgresql)" >&2
  exit 1
fi
as() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$cmd" in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as "$bin/initdb" -D "$dir/data" -U gn --auth=trust -E UTF8 --no-instructions >/dev/null
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >>"$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 200
CONF
    as "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
    echo "postgres://gn@127.0.0.1:$port/postgres"
    ;;
  restart)
    as "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -m immediate -w restart >/dev/null
    ;;
  tls)
    cert=${3:?a certificate chain (PEM)} key=${4:?a private key (PEM)}
    install -m 0644 "$cert" "$dir/data/server.crt"
    install -m 0600 "$key" "$dir/data/server.key"
    [ "$(id -u)" = 0 ] && chown postgres "$dir/data/server.crt" "$dir/data/server.key"
    echo "ssl = on" >>"$dir/data/postgresql.conf"
    as "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -m fast -w restart >/dev/null
    ;;
  stop)
    as "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    ;;
  *)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
