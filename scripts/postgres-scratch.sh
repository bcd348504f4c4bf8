#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1, for the sql sink's tests and
# the README's walkthrough: trust authentication, no fsync, user and
# database `sluice`. Needs Debian's server (apt-get install postgresql).
#
#   scripts/postgres-scratch.sh start DIR PORT   # prints postgres://sluice@127.0.0.1:PORT/sluice
#   scripts/postgres-scratch.sh halt DIR         # kills the server as a crash would, keeps its data
#   scripts/postgres-scratch.sh resume DIR PORT  # starts it again on its data
#   scripts/postgres-scratch.sh stop DIR         # stops it and removes its data
#   scripts/postgres-scratch.sh tls DIR PORT CERT KEY
#       # restarts it with TLS (CERT and KEY: PEM files), taking TCP
#       # connections over TLS only (Unix-socket ones as before)
#
# PostgreSQL refuses to run as root: run as root, the server runs as the
# `postgres` user with its data in a directory of its own under /tmp, whose
# path DIR/datadir records; otherwise its data is DIR/data.
set -euo pipefail

usage() {
    echo "usage: $0 start DIR PORT | halt DIR | resume DIR PORT | stop DIR | tls DIR PORT CERT KEY" >&2
    exit 2
}
[ $# -ge 2 ] || usage
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "no PostgreSQL server found under /usr/lib/postgresql: apt-get install postgresql" >&2
    exit 1
fi
as=()
if [ "$(id -u)" = 0 ]; then
    as=(runuser -u postgres --)
fi

# Starts the server on DATA, listening on 127.0.0.1:PORT, and waits for it.
serve() {
    "${as[@]}" "$bin/pg_ctl" -D "$1" -l "$1/server.log" -w -t 60 \
        -o "-p $2 -k $1 -c listen_addresses=127.0.0.1 -c fsync=off" start > /dev/null ||
        { cat "$1/server.log" >&2; exit 1; }
}

case $1 in
start)
    [ $# -eq 3 ] || usage
    dir=$2 port=$3
    mkdir -p "$dir"
    if [ ${#as[@]} -gt 0 ]; then
        data=$(mktemp -d /tmp/sluice-postgres.XXXXXX)
        chown postgres: "$data"
    else
        data=$dir/data
        mkdir -p "$data"
    fi
    echo "$data" > "$dir/datadir"
    "${as[@]}" "$bin/initdb" -D "$data" -U sluice -A trust -E UTF8 --locale=C --no-sync > "$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    serve "$data" "$port"
    "${as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U sluice sluice
    echo "postgres://sluice@127.0.0.1:$port/sluice"
    ;;
halt)
    data=$(cat "$2/datadir")
    "${as[@]}" "$bin/pg_ctl" -D "$data" -m immediate stop > /dev/null
    ;;
resume)
    [ $# -eq 3 ] || usage
    serve "$(cat "$2/datadir")" "$3"
    ;;
tls)
    [ $# -eq 5 ] || usage
    data=$(cat "$2/datadir")
    # The server reads its key only if no one else may (0600, its owner).
    install -m 0644 "$4" "$data/server.crt"
    install -m 0600 "$5" "$data/server.key"
    if [ ${#as[@]} -gt 0 ]; then
        chown postgres: "$data/server.crt" "$data/server.key"
    fi
    printf "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n" >> "$data/postgresql.conf"
    printf "local all all trust\nhostssl all all 127.0.0.1/32 trust\n" > "$data/pg_hba.conf"
    "${as[@]}" "$bin/pg_ctl" -D "$data" -m fast stop > /dev/null
    serve "$data" "$3"
    ;;
stop)
    dir=$2
    [ -f "$dir/datadir" ] || exit 0
    data=$(cat "$dir/datadir")
    "${as[@]}" "$bin/pg_ctl" -D "$data" -m immediate stop > /dev/null 2>&1 || true
    rm -rf "$data" "$dir/datadir"
    ;;
*)
    usage
    ;;
esac
