"""Certificates as the centre CA issued them before they carried ``urn:counterguard:ROLE:ID``: the
subject alone names the gateway. Gateways in the field may still hold such a certificate until it is
renewed; the tests check they keep working and bench/user_lookup.py what they cost a cluster."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from counterguard.provisioning.ca import CertificateAuthority, cert_pem, key_pem


def issue_without_uri(ca: CertificateAuthority, cn: str, out_dir: Path, *, region: str, branch: str,
                      days: int = 30) -> None:
    """``ca.issue(cn, role="gateway", ...)`` as it was: the same subject, key and usage, no URI."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                                     x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "gateway")]))
            .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca.key, hashes.SHA256()))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gateway.key").write_bytes(key_pem(key))
    (out / "gateway.crt").write_bytes(cert_pem(cert))
    ca._record(cert, "gateway", region=region, branch=branch)
