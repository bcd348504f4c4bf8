#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1, for the sql sink's tests and
# the README's walkthrough: trust authentication, no fsync, user and
# database `sluice`. Needs Debian's server (apt-get install postgresql).
#
#   scripts/postgres-scratch.sh start DIR PORT   # prints postgres://sluice@127.0.0.1:PORT/sluice
#   scripts/postgres-scratch.sh stop DIR
#
# PostgreSQL refuses to run as root: run as root, the server runs as the
# `postgres` user with its data in a directory of its own under /tmp, whose
# path DIR/datadir records; otherwise its data is DIR/data.
set -euo pipefail

usage() {
    echo "usage: $0 start DIR PORT | stop DIR" >&2
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
    "${as[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
        -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c fsync=off" start > /dev/null ||
        { cat "$data/server.log" >&2; exit 1; }
    "${as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U sluice sluice
    echo "postgres://sluice@127.0.0.1:$port/sluice"
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
