"""Real OAuth client libraries against a running ropc.

Fetches a token with the password grant twice with each library (client
secret in an HTTP Basic header, then in the body) and refreshes it.
Environment: ROPC_TOKEN_URL, ROPC_CA (PEM to trust), ROPC_CLIENT_ID,
ROPC_CLIENT_SECRET, ROPC_USER, ROPC_PASSWORD.
"""

import os

from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from checks import check, finish
from oauthlib.oauth2 import LegacyApplicationClient
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

URL = os.environ["ROPC_TOKEN_URL"]
CA = os.environ["ROPC_CA"]
CLIENT_ID = os.environ["ROPC_CLIENT_ID"]
SECRET = os.environ["ROPC_CLIENT_SECRET"]
USER = os.environ["ROPC_USER"]
PASSWORD = os.environ["ROPC_PASSWORD"]



def valid(token, scope):
    granted = token.get("scope")
    if isinstance(granted, list):  # requests-oauthlib splits the scope
        granted = " ".join(granted)
    return (
        len(token.get("access_token", "")) == 43
        and token.get("token_type", "").lower() == "bearer"
        and token.get("expires_in") == 300
        and granted == scope
    )


# requests-oauthlib, client secret in HTTP Basic (its default).
session = OAuth2Session(client=LegacyApplicationClient(client_id=CLIENT_ID))
token = session.fetch_token(
    URL, username=USER, password=PASSWORD, auth=HTTPBasicAuth(CLIENT_ID, SECRET), scope=["read"], verify=CA
)
check("requests-oauthlib password grant, Basic", valid(token, "read"), token)
refreshed = session.refresh_token(URL, refresh_token=token["refresh_token"], auth=HTTPBasicAuth(CLIENT_ID, SECRET), verify=CA)
check("requests-oauthlib refresh, Basic", refreshed["access_token"] != token["access_token"], refreshed)
check("requests-oauthlib refresh rotated", refreshed["refresh_token"] != token["refresh_token"], refreshed)

# requests-oauthlib, client secret in the body.
session = OAuth2Session(client=LegacyApplicationClient(client_id=CLIENT_ID))
token = session.fetch_token(
    URL, username=USER, password=PASSWORD, client_id=CLIENT_ID, client_secret=SECRET, include_client_id=True, verify=CA
)
check("requests-oauthlib password grant, body", valid(token, "read"), token)

# authlib, client_secret_basic then client_secret_post, each with a refresh.
for method in ("client_secret_basic", "client_secret_post"):
    client = AuthlibSession(CLIENT_ID, SECRET, token_endpoint_auth_method=method, scope="read write")
    token = client.fetch_token(URL, username=USER, password=PASSWORD, grant_type="password", verify=CA)
    check(f"authlib password grant, {method}", valid(token, "read write"), token)
    new = client.refresh_token(URL, refresh_token=token["refresh_token"], verify=CA)
    check(f"authlib refresh, {method}", new["access_token"] != token["access_token"], new)

# A wrong password is an OAuth error the libraries surface.
try:
    OAuth2Session(client=LegacyApplicationClient(client_id=CLIENT_ID)).fetch_token(
        URL, username=USER, password="wrong", auth=HTTPBasicAuth(CLIENT_ID, SECRET), verify=CA
    )
    check("wrong password is refused", False)
except Exception as e:  # oauthlib raises InvalidGrantError
    check("wrong password is refused", "invalid_grant" in repr(e) or type(e).__name__ == "InvalidGrantError", repr(e))

# A 1 MiB body, written whole before the answer is read (as http.client
# does): the 413 is read every time, not a broken pipe or a reset.
import http.client
import ssl
import urllib.parse

parts = urllib.parse.urlsplit(URL)
context = ssl.create_default_context(cafile=CA)
big = "grant_type=password&username=alice&password=" + "x" * (1 << 20)
statuses = []
for _ in range(20):
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=10)
    try:
        conn.request("POST", parts.path, body=big, headers={"Content-Type": "application/x-www-form-urlencoded"})
        statuses.append(conn.getresponse().status)
    except OSError as e:  # BrokenPipeError, ConnectionResetError
        statuses.append(type(e).__name__)
    finally:
        conn.close()
check("a 1 MiB body gets 413, 20 of 20", statuses == [413] * 20, statuses)

finish("interop")
