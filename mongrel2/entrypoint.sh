#!/bin/sh
# Start Mongrel2 1.12 from mongrel2.conf.template.
#
# Renders the template with the M2_* environment variables below, loads it into a
# sqlite config db with `m2sh load`, then execs mongrel2 so that it is the process that
# receives SIGTERM/SIGINT (PID 1 in a container). Everything written goes to M2_RUN_DIR,
# so the image runs with a read-only root filesystem and a tmpfs there.
#
# Works outside Docker too (integration tests), as root or not, e.g.:
#   M2_PORT=18080 M2_REQUESTS_SPEC=tcp://127.0.0.1:19997 \
#   M2_RESPONSES_SPEC=tcp://127.0.0.1:19996 M2_RUN_DIR=/tmp/m2 \
#   M2_STATIC_DIR=mongrel2/static M2_ACCESS_LOG=/dev/null sh mongrel2/entrypoint.sh
#
# Extra arguments, if any, are run instead of mongrel2 once the db is loaded, e.g.
# `docker run --rm IMAGE m2sh routes -db /run/mongrel2/config.sqlite -host default`.
set -eu
# Files and the control socket created in M2_RUN_DIR are for this user only.
umask 077

die() { printf 'entrypoint: %s\n' "$*" >&2; exit 64; }

script_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)

: "${M2_CONFIG_TEMPLATE:=$script_dir/mongrel2.conf.template}"
: "${M2_RUN_DIR:=/run/mongrel2}"
: "${M2_PORT:=6767}"
: "${M2_BIND_ADDR:=0.0.0.0}"
: "${M2_REQUESTS_SPEC:=tcp://*:9997}"
: "${M2_RESPONSES_SPEC:=tcp://*:9996}"
: "${M2_CONTENT_LENGTH:=20480}"
: "${M2_IDLE_TIMEOUT:=20}"
: "${M2_STATIC_DIR:=/srv/static}"
: "${M2_HANDLER_PROTOCOL:=json}"
# ZeroMQ I/O threads of mongrel2's context (its zeromq.threads setting).
: "${M2_ZMQ_THREADS:=1}"
# Large uploads (docs: doors/mongrel2/uploads.py): a directory shared with the handlers on
# this host (a volume writable by this uid), where mongrel2 writes bodies over
# M2_CONTENT_LENGTH. Empty: such bodies get mongrel2's 413.
: "${M2_UPLOAD_DIR:=}"
: "${M2_ACCESS_LOG:=/dev/stdout}"
: "${M2_ERROR_LOG:=/dev/stderr}"
# TLS (docs/tls.md): M2_TLS=1 makes this front speak HTTPS only, on M2_PORT, with the
# PEM certificate (chain) and key read from the files M2_TLS_CERT and M2_TLS_KEY (a bind
# mount or a Swarm secret). One mongrel2 process serves one Server, so an HTTP and an
# HTTPS port are two fronts (compose/tls.yml adds the second container).
: "${M2_TLS:=0}"
: "${M2_TLS_CERT:=}"
: "${M2_TLS_KEY:=}"
# mbedtls names (space separated), TLS 1.2 AEAD suites with forward secrecy only: none of
# them exists before TLS 1.2, so a TLS 1.0/1.1 client finds no common suite. mongrel2 1.12
# has no minimum-version setting (src/io.c iobuf_ssl_setup keeps mbedtls' default).
: "${M2_TLS_CIPHERS:=TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256 TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384 TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256 TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256 TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384 TLS-ECDHE-RSA-WITH-CHACHA20-POLY1305-SHA256}"
# Every front gets its own identities, new at each start, unless set: handlers address a
# reply to the front by M2_SEND_IDENT (the SENDER of each request; mongrel2's SUB subscribes
# to it), so two fronts sharing one would each deliver a reply to whichever of their own
# clients holds that connection id.
new_uuid() { cat /proc/sys/kernel/random/uuid; }
: "${M2_SERVER_UUID:=$(new_uuid)}"
: "${M2_SEND_IDENT:=$(new_uuid)}"

# Absolute paths: mongrel2 runs without chroot and never changes directory, and the
# tests may pass relative ones.
mkdir -p -- "$M2_RUN_DIR" || die "cannot create M2_RUN_DIR=$M2_RUN_DIR"
M2_RUN_DIR=$(CDPATH='' cd -- "$M2_RUN_DIR" && pwd -P)
[ -w "$M2_RUN_DIR" ] || die "M2_RUN_DIR=$M2_RUN_DIR is not writable by uid $(id -u)"
: "${M2_CONTROL_SPEC:=ipc://$M2_RUN_DIR/control}"

[ -d "$M2_STATIC_DIR" ] || die "M2_STATIC_DIR=$M2_STATIC_DIR is not a directory"
# Dir(base=...) must end with '/'; mongrel2 realpath()s it against the cwd.
M2_STATIC_DIR=$(CDPATH='' cd -- "$M2_STATIC_DIR" && pwd -P)/
[ "$M2_STATIC_DIR" = "//" ] && die "refusing to serve / as M2_STATIC_DIR"

[ -f "$M2_CONFIG_TEMPLATE" ] || die "template not found: $M2_CONFIG_TEMPLATE (set M2_CONFIG_TEMPLATE)"

# ---- validation: bad values fail here with a clear message, not inside m2sh ----
is_uint() { case $1 in ''|*[!0-9]*) return 1 ;; esac; }
is_uint "$M2_PORT" && [ "$M2_PORT" -ge 1 ] && [ "$M2_PORT" -le 65535 ] \
    || die "M2_PORT must be 1-65535, got '$M2_PORT'"
is_uint "$M2_IDLE_TIMEOUT" && [ "$M2_IDLE_TIMEOUT" -ge 1 ] || die "M2_IDLE_TIMEOUT must be a whole number of seconds, got '$M2_IDLE_TIMEOUT'"
is_uint "$M2_ZMQ_THREADS" && [ "$M2_ZMQ_THREADS" -ge 1 ] && [ "$M2_ZMQ_THREADS" -le 16 ] \
    || die "M2_ZMQ_THREADS must be 1-16, got '$M2_ZMQ_THREADS'"
case $M2_TLS in 0 | 1) ;; *) die "M2_TLS must be 0 or 1, got '$M2_TLS'" ;; esac
case $M2_TLS_CIPHERS in
    '' | *[!A-Z0-9\ -]*) die "M2_TLS_CIPHERS must be mbedtls suite names (A-Z, 0-9, '-') separated by spaces, got '$M2_TLS_CIPHERS'" ;;
esac
# Only AEAD suites (GCM, ChaCha20-Poly1305, CCM), which exist from TLS 1.2 on: with any
# older suite in the list, mbedtls 2.28 accepts TLS 1.0 and 1.1 handshakes (checked with
# openssl s_client). A SHA-2 MAC is not enough: *-CBC-SHA256 is CBC, *-NULL-SHA256 encrypts
# nothing.
for suite in $M2_TLS_CIPHERS; do
    case $suite in
        *-NULL-* | *-CBC-*) die "M2_TLS_CIPHERS: $suite is not an AEAD suite (only *-GCM-*, *-CHACHA20-POLY1305-*, *-CCM, *-CCM-8 are allowed)" ;;
        TLS-*-GCM-SHA256 | TLS-*-GCM-SHA384 | TLS-*-CHACHA20-POLY1305-SHA256 | TLS-*-CCM | TLS-*-CCM-8) ;;
        *) die "M2_TLS_CIPHERS: $suite is not an AEAD suite of TLS 1.2 (only *-GCM-*, *-CHACHA20-POLY1305-*, *-CCM, *-CCM-8 are allowed)" ;;
    esac
done
case $M2_HANDLER_PROTOCOL in json | tnetstring) ;; *) die "M2_HANDLER_PROTOCOL must be json or tnetstring, got '$M2_HANDLER_PROTOCOL'" ;; esac
is_uint "$M2_CONTENT_LENGTH" || die "M2_CONTENT_LENGTH must be a number of bytes, got '$M2_CONTENT_LENGTH'"
case $M2_BIND_ADDR in
    *[!0-9.]* | '') die "M2_BIND_ADDR must be a numeric IPv4 address (mongrel2 does not resolve names), got '$M2_BIND_ADDR'" ;;
esac
for spec in "$M2_REQUESTS_SPEC" "$M2_RESPONSES_SPEC" "$M2_CONTROL_SPEC"; do
    case $spec in
        tcp://* | ipc://* | inproc://*) ;;
        *) die "not a ZeroMQ endpoint: '$spec'" ;;
    esac
done
# ipc://: fail here rather than when mongrel2 binds. A unix socket path holds 107 bytes at
# most (sun_path[108] with its NUL); an absolute path's directory must be writable.
for var in M2_REQUESTS_SPEC M2_RESPONSES_SPEC M2_CONTROL_SPEC; do
    eval "spec=\$$var"
    case $spec in ipc://*)
        path=${spec#ipc://}
        [ "${#path}" -le 107 ] || die "$var path too long for a unix socket (107 bytes at most): $spec"
        case $path in /*)
            dir=${path%/*}; dir=${dir:-/}
            [ -d "$dir" ] && [ -w "$dir" ] || die "$var=$spec: $dir is not a directory writable by uid $(id -u)" ;;
        esac ;;
    esac
done
case $M2_CONTROL_SPEC in
    ipc://*) ;;
    tcp://127.* | tcp://localhost:* | 'tcp://[::1]:'*) ;;
    *) die "M2_CONTROL_SPEC must be ipc:// or loopback tcp: the control port accepts 'stop' from anyone (got '$M2_CONTROL_SPEC')" ;;
esac
# mongrel2 fopen()s both logs by name ("a+"); for /dev/stdout and /dev/stderr that is
# a reopen through /proc/self/fd, which checks the permissions of the pipe or file behind
# the fd. Docker (runc) chowns the stdio pipes to the container user, but outside Docker
# a non-root mongrel2 whose stderr is a root-owned file or pipe fails late with
# "Couldn't open /dev/stderr log file". Fail early and say why.
for var in M2_ACCESS_LOG M2_ERROR_LOG; do
    eval "log=\$$var"
    (: >> "$log") 2>/dev/null \
        || die "$var=$log cannot be opened for appending by uid $(id -u) (if it is /dev/std*, the fd behind it belongs to another user)"
done
nl='
'
for var in M2_REQUESTS_SPEC M2_RESPONSES_SPEC M2_CONTROL_SPEC M2_STATIC_DIR M2_RUN_DIR \
           M2_ACCESS_LOG M2_ERROR_LOG M2_SERVER_UUID M2_SEND_IDENT; do
    eval "val=\$$var"
    case $val in
        *\"* | *\'* | *"$nl"* | *\\*) die "$var must not contain quotes, backslashes or newlines" ;;
    esac
done

M2_UPLOAD_SETTING=
if [ -n "$M2_UPLOAD_DIR" ]; then
    [ -d "$M2_UPLOAD_DIR" ] && [ -w "$M2_UPLOAD_DIR" ] \
        || die "M2_UPLOAD_DIR=$M2_UPLOAD_DIR is not a directory writable by uid $(id -u)"
    M2_UPLOAD_DIR=$(CDPATH='' cd -- "$M2_UPLOAD_DIR" && pwd -P)
    case $M2_UPLOAD_DIR in
        *\"* | *\'* | *"$nl"* | *\\*) die "M2_UPLOAD_DIR must not contain quotes, backslashes or newlines" ;;
    esac
    M2_UPLOAD_SETTING="\"upload.temp_store\": \"$M2_UPLOAD_DIR/upload.XXXXXX\","
fi

# mongrel2 reads <certdir><server uuid>.crt and .key (src/server.c Server_init_ssl), so the
# mounted files are copied under this start's UUID into the run dir (a tmpfs; umask 077
# keeps the key private to the server user).
M2_CERT_DIR=$M2_RUN_DIR/certs/
M2_USE_SSL=$M2_TLS
rm -rf -- "$M2_CERT_DIR"
if [ "$M2_TLS" = 1 ]; then
    for var in M2_TLS_CERT M2_TLS_KEY; do
        eval "file=\$$var"
        [ -n "$file" ] || die "M2_TLS=1 needs $var (the path of a PEM file)"
        [ -r "$file" ] || die "$var=$file is not a file readable by uid $(id -u)"
    done
    grep -q -- '-----BEGIN CERTIFICATE-----' "$M2_TLS_CERT" \
        || die "M2_TLS_CERT=$M2_TLS_CERT has no PEM certificate"
    grep -q -- '-----BEGIN .*PRIVATE KEY-----' "$M2_TLS_KEY" \
        || die "M2_TLS_KEY=$M2_TLS_KEY has no PEM private key"
    grep -q -- 'ENCRYPTED' "$M2_TLS_KEY" && die "M2_TLS_KEY=$M2_TLS_KEY is encrypted: mongrel2 loads keys without a passphrase"
    case $M2_SERVER_UUID in *[!A-Za-z0-9-]* | '') die "M2_SERVER_UUID names the certificate files: letters, digits and '-' only, got '$M2_SERVER_UUID'" ;; esac
    mkdir -p -- "$M2_CERT_DIR"
    cat -- "$M2_TLS_CERT" > "$M2_CERT_DIR$M2_SERVER_UUID.crt"
    cat -- "$M2_TLS_KEY" > "$M2_CERT_DIR$M2_SERVER_UUID.key"
fi

export M2_PORT M2_BIND_ADDR M2_REQUESTS_SPEC M2_RESPONSES_SPEC M2_CONTROL_SPEC \
       M2_CONTENT_LENGTH M2_IDLE_TIMEOUT M2_STATIC_DIR M2_RUN_DIR M2_ACCESS_LOG M2_ERROR_LOG \
       M2_SERVER_UUID M2_SEND_IDENT M2_HANDLER_PROTOCOL M2_USE_SSL M2_CERT_DIR M2_TLS_CIPHERS \
       M2_UPLOAD_SETTING M2_ZMQ_THREADS

# ---- render: literal ${M2_*} substitution (no regex replacement, so '&', '/', '|' in
# values are safe); an unset ${M2_*} is an error ----
conf=$M2_RUN_DIR/mongrel2.conf
db=$M2_RUN_DIR/config.sqlite
awk '
{
    out = ""; line = $0
    while ((i = index(line, "${")) > 0) {
        rest = substr(line, i + 2); j = index(rest, "}")
        if (j == 0) break
        name = substr(rest, 1, j - 1)
        if (name !~ /^M2_[A-Z0-9_]+$/) {      # not a placeholder: copy "${" literally
            out = out substr(line, 1, i + 1); line = rest; continue
        }
        if (!(name in ENVIRON)) {
            printf "entrypoint: template line %d: no value for ${%s}\n", NR, name > "/dev/stderr"
            bad = 1
        }
        out = out substr(line, 1, i - 1) ENVIRON[name]
        line = substr(rest, j + 1)
    }
    print out line
}
END { exit bad }
' "$M2_CONFIG_TEMPLATE" > "$conf.tmp" || { rm -f -- "$conf.tmp"; die "failed to render $M2_CONFIG_TEMPLATE"; }
mv -f -- "$conf.tmp" "$conf"

# m2sh calls getlogin(), which fails without a controlling tty and complains.
if [ -z "${LOGNAME:-}" ]; then
    LOGNAME=$(id -un 2>/dev/null || echo mongrel2)
    export LOGNAME
fi

rm -f -- "$db"
m2sh load -config "$conf" -db "$db" >&2 || die "m2sh load failed for $conf"

# A pid file left by a killed run (or by PID 1 of the previous container start, which
# is the same pid as ours) makes mongrel2 refuse to start.
rm -f -- "$M2_RUN_DIR/mongrel2.pid"

# Any relative path mongrel2 might still use (e.g. its default ipc://run/control) lands
# in the run dir, never in the read-only root.
cd -- "$M2_RUN_DIR"

# libzmq creates an ipc:// socket with the process umask, and connecting to a unix socket
# needs write permission on it: with 077 only this uid could. 007 lets in handlers of this
# gid whatever their uid (compose/ipc.yml: a 0770 volume of gid 10001). What is private
# is written above already; the control socket stays in M2_RUN_DIR, this container's own.
case "$M2_REQUESTS_SPEC $M2_RESPONSES_SPEC" in
    *ipc://*) umask 007 ;;
esac

if [ "$#" -gt 0 ]; then
    exec "$@"
fi
exec mongrel2 "$db" "$M2_SERVER_UUID"
