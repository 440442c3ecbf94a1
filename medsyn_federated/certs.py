"""TLS certificates for a federation: a self-signed certificate authority (CA) and a server certificate
signed by it, made with ``cryptography`` (what ``medsyn federated certs`` writes).

Files (PEM): ``ca.crt`` (public: every site needs it to check the server), ``ca.key`` (secret, stays with
the admin, 0600), ``server.pem`` and ``server.key`` (the server's certificate and secret key, 0600). The
server certificate names every host name and IP address the sites will dial (subject alternative names);
a site that dials another name is refused by TLS. For production, a hospital's own PKI may issue these
files instead: the server only needs a certificate chain the sites trust.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from medsyn_core.files import atomic_write_bytes, private_mkdir

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
DEFAULT_DAYS = 365


@dataclass(frozen=True)
class CertificateFiles:
    """Where :func:`make_certificates` wrote the PEM files."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP384R1())


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _san(hosts: list[str]):
    from cryptography import x509

    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def make_certificates(out_dir: str | Path, hosts: list[str] | tuple[str, ...] = DEFAULT_HOSTS,
                      days: int = DEFAULT_DAYS, overwrite: bool = False) -> CertificateFiles:
    """Write a new CA and a server certificate for ``hosts`` (names or IP addresses the sites dial) into
    ``out_dir`` (created 0700; keys 0600). Refuses to replace existing files unless ``overwrite``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    hosts = [h.strip() for h in hosts if h and h.strip()]
    if not hosts:
        raise ValueError("Give at least one host name or IP address that the sites will use to reach the "
                         "server (e.g. --host fed.hospital.example).")
    if not 1 <= int(days) <= 3650:
        raise ValueError(f"The certificates' lifetime must be 1 to 3650 days (got {days}).")
    out = Path(out_dir)
    files = CertificateFiles(out / "ca.crt", out / "ca.key", out / "server.pem", out / "server.key")
    existing = [p.name for p in vars(files).values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{out} already holds {', '.join(existing)}; choose another folder or pass "
                              "--overwrite (sites holding the old ca.crt will then be refused).")
    private_mkdir(out)
    now = dt.datetime.now(dt.UTC)
    ca_key, server_key = _key(), _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MedSyn federation CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA384()))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
              .issuer_name(ca_name).public_key(server_key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
              .add_extension(_san(hosts), critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA384()))
    pem = serialization.Encoding.PEM
    atomic_write_bytes(files.ca_key, _pem_key(ca_key))
    atomic_write_bytes(files.server_key, _pem_key(server_key))
    atomic_write_bytes(files.server_cert, server.public_bytes(pem) + ca.public_bytes(pem))
    atomic_write_bytes(files.ca_cert, ca.public_bytes(pem))
    return files
