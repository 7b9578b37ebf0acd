"""A throwaway certificate authority and server certificate for serving the emulator over
https on loopback, so clients that insist on https (Microsoft's Python client) run unchanged.

Made at start, written to a fresh temporary directory, valid for ``localhost`` and
``127.0.0.1`` for a day; a client trusts it through ``REQUESTS_CA_BUNDLE`` (requests) or
``ssl.create_default_context(cafile=...)``. Nothing here is a secret worth keeping.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_FOR: Final = datetime.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Certificates:
    """Where the files are: the CA to trust, and the server's certificate and key."""

    ca_path: Path
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name,
             key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALID_FOR)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False))


def _ca(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = _name("Dataverse emulator throwaway CA")
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False)
    return (_builder(name, name, key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .sign(key, hashes.SHA256()))


def _server(key: ec.EllipticCurvePrivateKey, ca: x509.Certificate,
            ca_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    names = x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    issuer_key = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    return (_builder(_name("localhost"), ca.subject, key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(names, critical=False)
            .add_extension(issuer_key, critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))


def make_certificates(directory: Path | None = None) -> Certificates:
    """A fresh CA and a server certificate signed by it, written as PEM files."""
    folder = directory or Path(tempfile.mkdtemp(prefix="dataverse-emulator-tls-"))
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _ca(ca_key)
    found = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    found.ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    found.cert_path.write_bytes(_server(key, ca, ca_key).public_bytes(serialization.Encoding.PEM))
    found.key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    found.key_path.chmod(0o600)
    return found
