"""A development CA with a server and a client certificate, for TLS and mutual TLS.

    python -m devkit.dev_certs .dev/certs      # make certs

The server certificate is valid for localhost and 127.0.0.1. Keys are written 0600.
Generated, never committed.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True)
class DevCerts:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@dataclass(frozen=True)
class _Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    common_name: str,
    issuer: _Issued | None,
    *,
    usage: x509.ObjectIdentifier | None,
    sans: list[x509.GeneralName],
) -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.cert.subject if issuer else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    signer = issuer.key if issuer else key
    return _Issued(builder.sign(signer, hashes.SHA256()), key)


def _write(issued: _Issued, cert_path: Path, key_path: Path | None) -> None:
    cert_path.write_bytes(issued.cert.public_bytes(serialization.Encoding.PEM))
    if key_path is not None:
        key_path.write_bytes(
            issued.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_path.chmod(0o600)


def write_dev_certs(directory: Path, ca_name: str = "user-service dev CA") -> DevCerts:
    directory.mkdir(parents=True, exist_ok=True)
    ca = _issue(ca_name, None, usage=None, sans=[])
    server = _issue(
        "localhost",
        ca,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client = _issue("user-service-client", ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH, sans=[])
    paths = DevCerts(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )
    _write(ca, paths.ca_cert, None)
    _write(server, paths.server_cert, paths.server_key)
    _write(client, paths.client_cert, paths.client_key)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path)
    certs = write_dev_certs(parser.parse_args().directory)
    print(f"wrote CA {certs.ca_cert}, server {certs.server_cert}, client {certs.client_cert}")


if __name__ == "__main__":
    main()
