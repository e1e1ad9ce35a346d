#!/bin/sh
# A development CA and a server certificate for the TLS front (make certs; docs/tls.md).
#   sh mongrel2/make-certs.sh [DIR]      (default .certs, git-ignored)
# Writes DIR/ca.crt (trust this one in clients), DIR/ca.key, DIR/server.crt (server
# certificate followed by the CA: the chain mongrel2 sends) and DIR/server.key, for
# localhost, 127.0.0.1 and mongrel2 (the service name inside the compose network).
# Keeps existing files while the server certificate is valid for 30 more days.
# ECDSA P-256 keys: every suite of M2_TLS_CIPHERS has an ECDSA variant.
set -eu
dir=${1:-.certs}
days=${CERT_DAYS:-397}   # what browsers accept for a leaf certificate

if [ -f "$dir/server.crt" ] && [ -f "$dir/server.key" ] \
    && openssl x509 -checkend 2592000 -noout -in "$dir/server.crt" >/dev/null 2>&1; then
    echo "certs: $dir/server.crt still valid, kept (remove $dir to make new ones)"
    exit 0
fi

umask 077
mkdir -p -- "$dir"
chmod 700 -- "$dir"
tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT

openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 \
    -days 825 -subj "/CN=m2stack development CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null

openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 \
    -subj "/CN=localhost" -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
cat > "$tmp/ext.cnf" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, DNS:mongrel2, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
openssl x509 -req -sha256 -days "$days" -in "$tmp/server.csr" -CA "$tmp/ca.crt" \
    -CAkey "$tmp/ca.key" -CAcreateserial -extfile "$tmp/ext.cnf" -out "$tmp/leaf.crt" 2>/dev/null
cat "$tmp/leaf.crt" "$tmp/ca.crt" > "$tmp/server.crt"
openssl verify -CAfile "$tmp/ca.crt" "$tmp/leaf.crt" >/dev/null

# The key is bind-mounted into the container, whose server user (uid 10001) is not the
# owner of this file: it must be readable by others. The directory (0700) keeps other
# users of this machine out. In Swarm a secret sets uid/mode instead (docs/tls.md).
chmod 644 "$tmp/server.key" "$tmp/server.crt" "$tmp/ca.crt"
mv -f "$tmp/ca.key" "$tmp/ca.crt" "$tmp/server.key" "$tmp/server.crt" "$dir/"
echo "certs: $dir/server.crt (localhost, 127.0.0.1, mongrel2), trust $dir/ca.crt"
