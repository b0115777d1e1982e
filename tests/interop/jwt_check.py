"""A JWT access token from ropc, verified by PyJWT with only the keys from
the JWKS endpoint that ropc's metadata names (RFC 8414, RFC 7517, RFC 9068).
Environment as interop.py, plus ROPC_ISSUER (the base URL serving the metadata)."""

import os

import jwt
import requests
from checks import check, finish

URL = os.environ["ROPC_TOKEN_URL"]
CA = os.environ["ROPC_CA"]
BASE = os.environ["ROPC_ISSUER"]

token = requests.post(
    URL,
    data={"grant_type": "password", "username": os.environ["ROPC_USER"], "password": os.environ["ROPC_PASSWORD"]},
    auth=(os.environ["ROPC_CLIENT_ID"], os.environ["ROPC_CLIENT_SECRET"]),
    verify=CA,
    timeout=10,
).json()["access_token"]

metadata = requests.get(f"{BASE}/.well-known/oauth-authorization-server", verify=CA, timeout=10).json()
ISSUER = metadata["issuer"]
jwks = requests.get(metadata["jwks_uri"], verify=CA, timeout=10).json()
header = jwt.get_unverified_header(token)
key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]



check("typ is at+jwt (RFC 9068)", header.get("typ") == "at+jwt", header)
claims = jwt.decode(token, key.key, algorithms=[header["alg"]], audience=ISSUER, issuer=ISSUER)
check("PyJWT verifies the signature, iss, aud and exp", True)
check("claims", claims["sub"] == os.environ["ROPC_USER"] and claims["client_id"] == os.environ["ROPC_CLIENT_ID"]
      and claims["scope"] == "read" and "jti" in claims and claims["exp"] - claims["iat"] == 300, claims)
head, body, sig = token.split(".")
try:
    jwt.decode(f"{head}.{body}x.{sig}", key.key, algorithms=[header["alg"]], audience=ISSUER)
    check("a tampered token is refused", False)
except jwt.InvalidTokenError:
    check("a tampered token is refused", True)

finish("jwt interop")
