#!/bin/sh
# First start: initdb, create the application role and database from DB_USER, DB_NAME
# and DB_PASSWORD, load init.sql. Every start: exec postgres (PID 1, SIGINT = fast shutdown).
set -eu
umask 077

die() { printf 'postgres entrypoint: %s\n' "$*" >&2; exit 64; }

: "${PGDATA:=/var/lib/postgresql/data}"
: "${DB_NAME:=hello_world}"
: "${DB_USER:=m2stack}"
: "${DB_MAX_CONNECTIONS:=200}"
case $DB_NAME$DB_USER in *[!a-z0-9_]*) die "DB_NAME and DB_USER must be [a-z0-9_]" ;; esac

# DB_PASSWORD_FILE (a Swarm or Compose secret) instead of DB_PASSWORD: the password then
# never appears in any environment. Both set is a mistake, not a choice.
if [ -n "${DB_PASSWORD_FILE:-}" ]; then
    [ -z "${DB_PASSWORD:-}" ] || die "DB_PASSWORD and DB_PASSWORD_FILE are both set: use one"
    [ -r "$DB_PASSWORD_FILE" ] || die "DB_PASSWORD_FILE=$DB_PASSWORD_FILE is not readable by uid $(id -u)"
    DB_PASSWORD=$(cat -- "$DB_PASSWORD_FILE")
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    [ -n "${DB_PASSWORD:-}" ] || die "DB_PASSWORD is empty: run 'make env' (it writes a random one into .env), or set DB_PASSWORD_FILE"
    [ -w "$PGDATA" ] || die "$PGDATA is not writable by uid $(id -u)"
    # Superuser `postgres` with peer auth on the socket only; the app role uses a password.
    initdb --username=postgres --auth-local=peer --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >&2
    printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
    # A private server for the setup: no TCP (so the TCP healthcheck stays red meanwhile).
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -c unix_socket_directories=/tmp" start >&2
    psql -h /tmp -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
        -v user="$DB_USER" -v password="$DB_PASSWORD" -v db="$DB_NAME" <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"user" ENCODING 'UTF8';
SQL
    psql -h /tmp -U postgres -d "$DB_NAME" -v ON_ERROR_STOP=1 -q --single-transaction \
        -v user="$DB_USER" -f /opt/postgres/init.sql >&2
    pg_ctl -D "$PGDATA" -w -m fast stop >&2
    echo "postgres entrypoint: initialised $PGDATA (database $DB_NAME, role $DB_USER)" >&2
fi

# The password is only needed at initialisation: keep it out of the server's environment.
unset DB_PASSWORD DB_PASSWORD_FILE
exec postgres -D "$PGDATA" -c listen_addresses='*' -c max_connections="$DB_MAX_CONNECTIONS" \
    -c unix_socket_directories=/run/postgresql "$@"
