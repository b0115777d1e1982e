#!/usr/bin/env bash
# Starts ropc with self-signed TLS on an ephemeral port and runs interop.py
# (secret clients), jwt_check.py (JWT access tokens) and client_auth.py
# (assertions, DPoP, mutual TLS) against it. Usage: tests/interop/run.sh
# [path/to/ropc]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
ROPC="${1:-$ROOT/target/debug/ropc}"
WORK="$(mktemp -d)"
# On failure the server's log says why (a refusal's `why` field, say).
trap 'rc=$?; [ "$rc" = 0 ] || { echo "--- ropc log (last 8 lines)"; tail -8 "$WORK/log.txt" 2>/dev/null; }; kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

SECRET="interop-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PASSWORD="pw with spaces & symbols: %+/=?"
hash() { printf '%s\n' "$1" | "$ROPC" hash-password --m-cost 1024 --t-cost 1; }
printf 'alice:%s\n' "$(hash "$PASSWORD")" > "$WORK/users.htpasswd"
python3 "$ROOT/tests/interop/make_keys.py" "$WORK"
cat > "$WORK/ropc.toml" <<TOML
[server]
listen = "127.0.0.1:0"
tls = "self-signed"
client_ca_file = "ca.pem"

[credential_manager]
users_file = "users.htpasswd"

[credential_manager.argon2]
m_cost = 1024
t_cost = 1
p_cost = 1

[[scopes]]
name = "read"

[[scopes]]
name = "write"

[[clients]]
id = "legacy"
secret = "$(hash "$SECRET")"
capabilities = ["password", "refresh_token"]
scopes = ["read", "write"]
default_scopes = ["read"]

[[clients]]
id = "jwt-client"
secret = "$(hash "$SECRET")"
capabilities = ["password", "refresh_token"]
scopes = ["read", "write"]
default_scopes = ["read"]
access_token_format = "jwt"

[[clients]]
id = "batch"
token_endpoint_auth_method = "private_key_jwt"
jwks_file = "batch-jwks.json"
capabilities = ["password", "refresh_token"]
scopes = ["read", "write"]
default_scopes = ["read"]

[[clients]]
id = "mtls"
token_endpoint_auth_method = "tls_client_auth"
tls_client_auth_subject_dn = "CN=batch,O=Example"
certificate_bound_access_tokens = true
capabilities = ["password", "refresh_token"]
scopes = ["read"]
default_scopes = ["read"]

[[clients]]
id = "bound"
secret = "$(hash "$SECRET")"
certificate_bound_access_tokens = true
capabilities = ["password", "refresh_token"]
scopes = ["read"]
default_scopes = ["read"]

[[clients]]
id = "selfsigned"
token_endpoint_auth_method = "self_signed_tls_client_auth"
jwks_file = "self-jwks.json"
capabilities = ["password"]
scopes = ["read"]
default_scopes = ["read"]
TOML

"$ROPC" serve --config "$WORK/ropc.toml" > "$WORK/out.txt" 2> "$WORK/log.txt" &
PID=$!
for _ in $(seq 1 100); do
  grep -q '^ropc listening on ' "$WORK/out.txt" && break
  sleep 0.1
done
URL="$(sed -n 's/^ropc listening on \(https:\/\/[^ ]*\)$/\1/p' "$WORK/out.txt" | head -1)"
[ -n "$URL" ] || { echo "ropc did not start:"; cat "$WORK/log.txt"; exit 1; }

ROPC_TOKEN_URL="$URL/oauth/v2/oauth-token" ROPC_CA="$WORK/self-signed-cert.pem" \
ROPC_CLIENT_ID=legacy ROPC_CLIENT_SECRET="$SECRET" ROPC_USER=alice ROPC_PASSWORD="$PASSWORD" \
  python3 "$ROOT/tests/interop/interop.py"
ROPC_TOKEN_URL="$URL/oauth/v2/oauth-token" ROPC_CA="$WORK/self-signed-cert.pem" ROPC_ISSUER="$URL" \
ROPC_CLIENT_ID=jwt-client ROPC_CLIENT_SECRET="$SECRET" ROPC_USER=alice ROPC_PASSWORD="$PASSWORD" \
  python3 "$ROOT/tests/interop/jwt_check.py"

ROPC_TOKEN_URL="$URL/oauth/v2/oauth-token" ROPC_CA="$WORK/self-signed-cert.pem" ROPC_KEYS="$WORK" \
ROPC_CLIENT_ID=legacy ROPC_CLIENT_SECRET="$SECRET" ROPC_USER=alice ROPC_PASSWORD="$PASSWORD" \
  python3 "$ROOT/tests/interop/client_auth.py"
