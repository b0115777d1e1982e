"""Keys and certificates for the client-authentication interop tests, made
with `cryptography` (independent of ropc's code). Usage: make_keys.py DIR

Writes into DIR:
  batch-es.pem, batch-rs.pem   the private_key_jwt client's private keys
  batch-jwks.json              their public JWKs (kids "es" and "rs")
  ca.pem                       the CA [server] client_ca_file names
  client.pem, client-key.pem   a certificate from it for CN=batch,O=Example
  rogue.pem, rogue-key.pem     the same subject from another CA
  self.pem, self-key.pem       a self-signed certificate
  self-jwks.json               its public key as a JWK
"""

import datetime
import json
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

out = Path(sys.argv[1])


def pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def jwk(key, kid=None):
    public = key.public_key()
    algorithm = RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm
    j = json.loads(algorithm.to_jwk(public))
    if kid:
        j["kid"] = kid
    return j


def name(*parts):
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in parts])


def certificate(subject, key, issuer, issuer_key, ca=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_cert(path, cert):
    (out / path).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


es = ec.generate_private_key(ec.SECP256R1())
rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)
(out / "batch-es.pem").write_bytes(pem_key(es))
(out / "batch-rs.pem").write_bytes(pem_key(rs))
(out / "batch-jwks.json").write_text(json.dumps({"keys": [jwk(es, "es"), jwk(rs, "rs")]}))

# RFC 4514 order is the reverse of the encoding: O first here, so that the
# DN reads "CN=batch,O=Example".
subject = name((NameOID.ORGANIZATION_NAME, "Example"), (NameOID.COMMON_NAME, "batch"))
for ca_name, cert_name in [("ca", "client"), ("rogue-ca", "rogue")]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = name((NameOID.COMMON_NAME, f"ropc interop {ca_name}"))
    ca_cert = certificate(ca_subject, ca_key, ca_subject, ca_key, ca=True)
    write_cert(f"{ca_name}.pem", ca_cert)
    key = ec.generate_private_key(ec.SECP256R1())
    write_cert(f"{cert_name}.pem", certificate(subject, key, ca_subject, ca_key))
    (out / f"{cert_name}-key.pem").write_bytes(pem_key(key))

self_key = ec.generate_private_key(ec.SECP256R1())
self_subject = name((NameOID.COMMON_NAME, "selfsigned"))
write_cert("self.pem", certificate(self_subject, self_key, self_subject, self_key))
(out / "self-key.pem").write_bytes(pem_key(self_key))
(out / "self-jwks.json").write_text(json.dumps({"keys": [jwk(self_key)]}))
