"""Recognising the CA's private key, on the CA machine and on a gateway.

Provisioning refuses to write a bundle that holds it and ``counterguard doctor`` reports one found
on a gateway: the CA key on a branch box would let whoever takes its SD card mint certificates for
any gateway.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

CA_KEY = "ca.key"  # the file name provisioning gives the CA's private key


def is_ca_key(key_path, ca_cert_path) -> bool:
    """True if the private key at ``key_path`` is the CA's own (its public half signs ``ca_cert_path``)."""
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        ca = x509.load_pem_x509_certificate(Path(ca_cert_path).read_bytes())
    except (OSError, ValueError, TypeError):
        return False
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(serialization.Encoding.PEM, pub) == \
        ca.public_key().public_bytes(serialization.Encoding.PEM, pub)


def find_ca_keys(directory, ca_cert_path=None) -> list[Path]:
    """Every file under ``directory`` that holds the CA private key (by content, or named ca.key).

    Used on gateways (``counterguard doctor``) and on bundles before they are written: the CA key
    on a branch box would let whoever takes its SD card mint certificates for any gateway.
    """
    found = []
    directory = Path(directory)
    if not directory.is_dir():
        return found
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.stat().st_size > 64 * 1024:
            continue
        if path.name == CA_KEY:
            found.append(path)
        elif ca_cert_path and path.suffix in (".key", ".pem") and is_ca_key(path, ca_cert_path):
            found.append(path)
    return found
