#!/usr/bin/env bash
# A throwaway PostgreSQL for the test suite (the Makefile's `test` target uses it).
#
#   scripts/postgres.sh start DIR   create a fresh cluster in DIR, start it on 127.0.0.1 on a
#                                   free port, create the database `trainlab`, and print
#                                   postgresql+psycopg://postgres@127.0.0.1:PORT/trainlab
#                                   (also written to DIR/url). If DIR already holds a running
#                                   cluster, only print its URL.
#   scripts/postgres.sh stop DIR    stop that cluster and remove DIR.
#
# Installs Debian's `postgresql` package when no server binaries are found (needs root). The
# server refuses to run as root, so as root the cluster belongs to the `postgres` system user.
# Trust authentication, listening on 127.0.0.1 only, its unix socket inside DIR, and no fsync:
# a disposable test server, never one for data you keep. Only the URL goes to stdout.
set -euo pipefail

MARKER=.trainlab-postgres

die() {
    echo "postgres.sh: $*" >&2
    exit 1
}

# The newest server's bin directory: Debian's layout, else whatever initdb is on PATH.
find_bindir() {
    local d best=""
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x $d/initdb && -x $d/pg_ctl ]] || continue
        if [[ -z $best ]] || [[ $(basename "$(dirname "$d")") -gt $(basename "$(dirname "$best")") ]]; then
            best=$d
        fi
    done
    if [[ -z $best ]] && command -v initdb >/dev/null 2>&1; then
        best=$(dirname "$(readlink -f "$(command -v initdb)")")
    fi
    echo "$best"
}

install_postgres() {
    [[ $EUID -eq 0 ]] || die "PostgreSQL is not installed and installing it needs root"
    command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and apt-get is missing"
    echo "postgres.sh: installing Debian's postgresql package..." >&2
    local log
    log=$(mktemp)
    if ! { timeout 300 apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >"$log" 2>&1; then
        tail -n 5 "$log" >&2
        rm -f "$log"
        die "apt-get install postgresql failed"
    fi
    rm -f "$log"
}

# Run a server-side command as the cluster's owner: `postgres` when we are root.
as_owner() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Prints DIR's URL and succeeds if DIR holds a cluster that is running and accepting connections.
running_url() {
    local dir=$1 bindir=$2 url port
    [[ -f $dir/url && -f $dir/data/postmaster.pid ]] || return 1
    url=$(<"$dir/url")
    port=${url##*:}
    port=${port%%/*}
    as_owner "$bindir/pg_ctl" status -D "$dir/data" >/dev/null 2>&1 || return 1
    "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -t 2 || return 1
    echo "$url"
}

cmd_start() {
    local dir=$1 bindir port url attempt started=0
    bindir=$(find_bindir)
    if [[ -z $bindir ]]; then
        install_postgres
        bindir=$(find_bindir)
        [[ -n $bindir ]] || die "no initdb under /usr/lib/postgresql/*/bin after installing"
    fi
    if [[ $EUID -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "there is no 'postgres' user to run the server as"
    fi

    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    if running_url "$dir" "$bindir"; then
        return 0
    fi
    # Anything else in DIR is a stale throwaway cluster of ours, or DIR must be empty.
    if [[ -e $dir/$MARKER ]]; then
        as_owner "$bindir/pg_ctl" stop -D "$dir/data" -m immediate >/dev/null 2>&1 || true
        find "$dir" -mindepth 1 -delete
    elif [[ -n $(ls -A "$dir") ]]; then
        die "$dir is not empty and holds no cluster of this script: refusing to use it"
    fi
    # The socket path DIR/.s.PGSQL.PORT must fit in a sockaddr_un (107 bytes).
    ((${#dir} <= 80)) || die "$dir is too long a path for the server's unix socket (80 characters at most)"

    touch "$dir/$MARKER"
    if [[ $EUID -eq 0 ]]; then
        chown postgres: "$dir"
        # The postgres user must be able to reach DIR.
        runuser -u postgres -- test -x "$dir" || die "the postgres user cannot enter $dir (a parent directory is closed to it)"
    fi
    chmod 700 "$dir"

    if ! as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C \
        >"$dir/initdb.log" 2>&1; then
        tail -n 5 "$dir/initdb.log" >&2
        die "initdb failed"
    fi
    cat >"$dir/data/pg_hba.conf" <<'EOF'
# Throwaway test server: trust, on the unix socket and 127.0.0.1 only.
local   all   all                 trust
host    all   all   127.0.0.1/32  trust
EOF
    cat >>"$dir/data/postgresql.conf" <<EOF

# --- scripts/postgres.sh: a throwaway test server ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    chown --reference="$dir/data" "$dir/data/pg_hba.conf"

    # A free port can be taken between choosing it and binding it: retry with another.
    for attempt in 1 2 3; do
        port=$(free_port)
        if as_owner "$bindir/pg_ctl" start -D "$dir/data" -w -t 60 -l "$dir/server.log" \
            -o "-p $port" >/dev/null 2>&1; then
            started=1
            break
        fi
        as_owner "$bindir/pg_ctl" stop -D "$dir/data" -m immediate >/dev/null 2>&1 || true
    done
    if ((!started)); then
        tail -n 5 "$dir/server.log" >&2 || true
        die "the server did not start"
    fi

    for attempt in $(seq 1 60); do
        "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1 && break
        ((attempt < 60)) || die "the server does not accept connections on 127.0.0.1:$port"
        sleep 0.5
    done
    "$bindir/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c "CREATE DATABASE trainlab" >/dev/null || die "CREATE DATABASE trainlab failed"

    url="postgresql+psycopg://postgres@127.0.0.1:$port/trainlab"
    echo "$url" >"$dir/url"
    echo "$url"
}

cmd_stop() {
    local dir=$1 bindir
    [[ -d $dir ]] || return 0
    dir=$(cd "$dir" && pwd -P)
    if [[ ! -e $dir/$MARKER ]]; then
        # Only an empty directory (say, from mktemp, where start failed early) goes as it is.
        [[ -z $(ls -A "$dir") ]] || die "$dir holds no cluster of this script: not removing it"
        rmdir "$dir"
        return 0
    fi
    bindir=$(find_bindir)
    if [[ -n $bindir && -f $dir/data/postmaster.pid ]]; then
        as_owner "$bindir/pg_ctl" stop -D "$dir/data" -m fast -w -t 30 >/dev/null 2>&1 ||
            as_owner "$bindir/pg_ctl" stop -D "$dir/data" -m immediate >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

case "${1:-}" in
start | stop)
    [[ $# -eq 2 && -n $2 ]] || die "usage: $0 start|stop DIR"
    "cmd_$1" "$2"
    ;;
*)
    die "usage: $0 start|stop DIR"
    ;;
esac
