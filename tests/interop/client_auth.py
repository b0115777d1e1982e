"""Client authentication beyond a secret, with proofs made by independent
code: PyJWT + cryptography for client assertions (RFC 7523) and DPoP
proofs (RFC 9449), Authlib's PrivateKeyJWT unchanged, and requests with
client certificates for mutual TLS (RFC 8705).

Environment: ROPC_TOKEN_URL, ROPC_CA, ROPC_KEYS (the directory
make_keys.py wrote), ROPC_CLIENT_ID and ROPC_CLIENT_SECRET (a secret
client, for DPoP and introspection), ROPC_USER, ROPC_PASSWORD.
"""

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from pathlib import Path

import jwt
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from checks import check, finish
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

CA = os.environ["ROPC_CA"]
# Requests go where the server listens; assertions and proofs name the
# token endpoint as the server's metadata gives it (its issuer's URL), which
# is what a client configured from the metadata does.
POST_URL = os.environ["ROPC_TOKEN_URL"]
BASE = POST_URL.rsplit("/oauth/", 1)[0]
INTROSPECT = BASE + "/oauth/v2/oauth-introspect"
METADATA = requests.get(BASE + "/.well-known/oauth-authorization-server", verify=CA, timeout=10).json()
URL = METADATA["token_endpoint"]
KEYS = Path(os.environ["ROPC_KEYS"])
SECRET_CLIENT = (os.environ["ROPC_CLIENT_ID"], os.environ["ROPC_CLIENT_SECRET"])
LOGIN = {"grant_type": "password", "username": os.environ["ROPC_USER"], "password": os.environ["ROPC_PASSWORD"]}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"



def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def key(name):
    return (KEYS / name).read_bytes()


def assertion(private_pem, alg, kid, client="batch", **overrides):
    now = int(time.time())
    claims = {"iss": client, "sub": client, "aud": URL, "exp": now + 60, "iat": now, "jti": str(uuid.uuid4())}
    claims.update(overrides)
    return jwt.encode(claims, private_pem, algorithm=alg, headers={"kid": kid})


def post(data, **kw):
    return requests.post(POST_URL, data=data, verify=CA, timeout=10, **kw)


def with_assertion(token, extra=None):
    data = dict(LOGIN, client_assertion_type=ASSERTION_TYPE, client_assertion=token)
    data.update(extra or {})
    return post(data)


def error(r):
    try:
        return r.json().get("error")
    except ValueError:
        return r.text


def introspect(token):
    r = requests.post(INTROSPECT, data={"token": token}, auth=SECRET_CLIENT, verify=CA, timeout=10)
    return r.json()


# --- private_key_jwt with PyJWT -------------------------------------------
for alg, kid, pem in [("ES256", "es", "batch-es.pem"), ("RS256", "rs", "batch-rs.pem"), ("PS256", "rs", "batch-rs.pem")]:
    r = with_assertion(assertion(key(pem), alg, kid))
    check(f"private_key_jwt {alg} (PyJWT)", r.status_code == 200 and "refresh_token" in r.json(), r.text)

token = assertion(key("batch-es.pem"), "ES256", "es")
first, again = with_assertion(token), with_assertion(token)
check("a replayed assertion is refused", first.status_code == 200 and error(again) == "invalid_client", again.text)

unsigned = jwt.encode(
    {"iss": "batch", "sub": "batch", "aud": URL, "exp": int(time.time()) + 60, "jti": str(uuid.uuid4())},
    None,
    algorithm="none",
)
r = with_assertion(unsigned)
check("an assertion with alg none is refused", error(r) == "invalid_client", r.text)

# HS256 keyed with the client's public key (PyJWT itself refuses to do this,
# so the HMAC is made by hand): the classic algorithm confusion.
public_pem = serialization.load_pem_private_key(key("batch-rs.pem"), None).public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
claims = {"iss": "batch", "sub": "batch", "aud": URL, "exp": int(time.time()) + 60, "jti": str(uuid.uuid4())}
signing_input = b64(json.dumps({"alg": "HS256", "kid": "rs"}).encode()) + "." + b64(json.dumps(claims).encode())
tag = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
r = with_assertion(signing_input + "." + b64(tag))
check("an HS256 assertion over the public key is refused", error(r) == "invalid_client", r.text)

r = with_assertion(assertion(key("batch-es.pem"), "ES256", "es", exp=int(time.time()) - 120))
check("an expired assertion is refused", error(r) == "invalid_client", r.text)
r = with_assertion(assertion(key("batch-es.pem"), "ES256", "es", aud="https://elsewhere.example/token"))
check("an assertion for another audience is refused", error(r) == "invalid_client", r.text)
other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
r = with_assertion(assertion(other, "ES256", "es"))
check("an assertion signed by another key is refused", error(r) == "invalid_client", r.text)

# --- Authlib's PrivateKeyJWT, unchanged ------------------------------------
session = OAuth2Session("batch", key("batch-rs.pem"), token_endpoint_auth_method=PrivateKeyJWT(URL, alg="RS256"))
token = session.fetch_token(
    POST_URL, grant_type="password", username=LOGIN["username"], password=LOGIN["password"], verify=CA
)
check("Authlib PrivateKeyJWT password grant", token.get("token_type", "").lower() == "bearer", token)
refreshed = session.refresh_token(POST_URL, refresh_token=token["refresh_token"], verify=CA)
check("Authlib PrivateKeyJWT refresh", refreshed.get("access_token") not in (None, token["access_token"]), refreshed)

# --- DPoP with PyJWT --------------------------------------------------------
def dpop_key():
    private = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    # RFC 7638: the required members, sorted, no whitespace.
    canonical = json.dumps({k: public[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return private, public, b64(hashlib.sha256(canonical.encode()).digest())


def proof(private, public, htu=URL, htm="POST"):
    claims = {"jti": str(uuid.uuid4()), "htm": htm, "htu": htu, "iat": int(time.time())}
    return jwt.encode(claims, private, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": public})


def dpop_post(data, header=None):
    return post(data, auth=SECRET_CLIENT, headers={"DPoP": header} if header else {})


priv, pub, jkt = dpop_key()
r = dpop_post(LOGIN, proof(priv, pub))
body = r.json()
check("DPoP login: token_type DPoP", r.status_code == 200 and body.get("token_type") == "DPoP", r.text)
seen = introspect(body["access_token"])
check(
    "introspection shows cnf.jkt (RFC 7638 thumbprint) and token_type DPoP",
    seen.get("cnf") == {"jkt": jkt} and seen.get("token_type") == "DPoP",
    seen,
)
refresh = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
r = dpop_post(refresh)
check("a DPoP-bound refresh without a proof fails", error(r) == "invalid_grant", r.text)
other_priv, other_pub, _ = dpop_key()
r = dpop_post(refresh, proof(other_priv, other_pub))
check("a DPoP-bound refresh with another key's proof fails", error(r) == "invalid_grant", r.text)
r = dpop_post(refresh, proof(priv, pub))
check("a DPoP-bound refresh with the right key passes", r.status_code == 200 and r.json()["token_type"] == "DPoP", r.text)
r = dpop_post(LOGIN, proof(priv, pub, htu=URL.rsplit("/oauth/", 1)[0] + "/elsewhere"))
check("a proof for another URL is refused", error(r) == "invalid_dpop_proof", r.text)

# --- mutual TLS --------------------------------------------------------------
client_cert = (str(KEYS / "client.pem"), str(KEYS / "client-key.pem"))
der = x509.load_pem_x509_certificate(key("client.pem")).public_bytes(serialization.Encoding.DER)
x5t = b64(hashlib.sha256(der).digest())
r = post(dict(LOGIN, client_id="mtls"), cert=client_cert)
check("tls_client_auth with a certificate from the configured CA", r.status_code == 200, r.text)
mtls = r.json()
seen = introspect(mtls.get("access_token", ""))
check("introspection shows cnf.x5t#S256", seen.get("cnf") == {"x5t#S256": x5t}, seen)
check("a certificate-bound token stays a bearer token", mtls.get("token_type") == "bearer", mtls)
r = post({"grant_type": "refresh_token", "refresh_token": mtls["refresh_token"], "client_id": "mtls"}, cert=client_cert)
check("a certificate-bound refresh with the same certificate passes", r.status_code == 200, r.text)
r = post({"grant_type": "refresh_token", "refresh_token": r.json()["refresh_token"], "client_id": "mtls"})
check("the same refresh without a certificate fails", error(r) == "invalid_client", r.text)
r = post(dict(LOGIN, client_id="mtls"), cert=(str(KEYS / "rogue.pem"), str(KEYS / "rogue-key.pem")))
check("a certificate from another CA is refused", error(r) == "invalid_client", r.text)
bound_client = ("bound", SECRET_CLIENT[1])
r = post(LOGIN, auth=bound_client)
check("a certificate-bound client without a certificate is refused", error(r) == "invalid_request", r.text)
r = post(LOGIN, auth=bound_client, cert=client_cert)
seen = introspect(r.json().get("access_token", "")) if r.status_code == 200 else {}
check("a secret client's tokens bound to its certificate", seen.get("cnf") == {"x5t#S256": x5t}, r.text)
r = post(dict(LOGIN, client_id="selfsigned"), cert=(str(KEYS / "self.pem"), str(KEYS / "self-key.pem")))
check("self_signed_tls_client_auth with the registered key", r.status_code == 200, r.text)
r = post(dict(LOGIN, client_id="selfsigned"), cert=client_cert)
check("self_signed_tls_client_auth with another key is refused", error(r) == "invalid_client", r.text)

# --- metadata ---------------------------------------------------------------
m = METADATA
methods = set(m.get("token_endpoint_auth_methods_supported", []))
check(
    "metadata lists the methods, the algorithms and certificate binding",
    {"private_key_jwt", "client_secret_jwt", "tls_client_auth", "self_signed_tls_client_auth"} <= methods
    and "ES256" in m.get("token_endpoint_auth_signing_alg_values_supported", [])
    and "ES256" in m.get("dpop_signing_alg_values_supported", [])
    and m.get("tls_client_certificate_bound_access_tokens") is True,
    m,
)

finish("client auth interop")
