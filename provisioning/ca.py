"""The centre's certificate authority: who may talk to the broker, and who no longer may.

The CA lives in one directory on an offline workstation at the anti-fraud centre::

    ca.key        the CA private key (0600; NEVER copied to a gateway, a bundle or the broker)
    ca.crt        the CA certificate (goes everywhere: gateways, broker, centre workers)
    crl.pem       the revocation list the broker checks every client against
    register.json every certificate issued: serial, CN, role, region/branch, expiry, revoked or not

Gateways and centre workers get a P-256 key and a certificate whose CN is their id (the broker uses
it as the MQTT user name, so the ACL follows the certificate) and that also carry the id as a URI,
``urn:counterguard:ROLE:ID`` (a clustered broker finds its user by that one name; see
provisioning/nats_config.py). The broker gets a server certificate for its host names. ``renew``
re-issues a certificate for the same key before it expires; ``revoke`` marks a certificate revoked
and rewrites the CRL (then regenerate / restart the broker).

    ca = CertificateAuthority.create("/srv/counterguard-ca")
    ca.issue("gw-0001", role="gateway", region="east", branch="b012", out_dir="bundle/gw-0001")
    ca.revoke("gw-0001")
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from counterguard.core.manifest import write_private
from counterguard.core.pki import CA_KEY, find_ca_keys, is_ca_key  # noqa: F401  (re-exported)

ROLES = ("gateway", "centre", "broker")
# The roles whose certificates name their holder by a URI as well as by the subject.
CLIENT_ROLES = ("gateway", "centre")
CA_CERT, CRL, REGISTER = "ca.crt", "crl.pem", "register.json"
RENEW_WITHIN_DAYS = 30
CRL_DAYS = 30


class ProvisionError(RuntimeError):
    """Provisioning cannot go on; the message names the file or the id and says what to do."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(path) -> x509.Certificate:
    path = Path(path)
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise ProvisionError(f"{path}: no such certificate file") from None
    except ValueError as exc:
        raise ProvisionError(f"{path}: not a PEM certificate ({exc})") from None


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return names[0].value if names else ""


def identity_uri(cn: str, role: str) -> str:
    """The URI a gateway's or centre worker's certificate carries besides its subject."""
    return f"urn:counterguard:{role}:{quote(cn, safe='-_.~')}"


def certificate_uri(cert: x509.Certificate) -> str | None:
    """The ``urn:counterguard:`` URI of ``cert``, or None (certificates issued before it existed)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    return next((u for u in san.get_values_for_type(x509.UniformResourceIdentifier)
                 if u.startswith("urn:counterguard:")), None)


def not_after(cert: x509.Certificate) -> dt.datetime:
    return cert.not_valid_after_utc



@dataclass(frozen=True)
class Issued:
    """One certificate written out: where the key and certificate are, and until when it is valid."""

    cn: str
    serial: int
    key_path: Path
    cert_path: Path
    not_after: dt.datetime


class CertificateAuthority:
    """The centre CA in ``directory`` (see the module docstring for its files)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        key_path, cert_path = self.dir / CA_KEY, self.dir / CA_CERT
        if not key_path.exists() or not cert_path.exists():
            raise ProvisionError(f"{self.dir}: no CA here (need {CA_KEY} and {CA_CERT}); "
                                 "create one with 'counterguard provision ca --dir DIR'")
        try:
            self.key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise ProvisionError(f"{key_path}: not an unencrypted PEM private key ({exc})") from None
        self.cert = load_cert(cert_path)
        self._held: list[dict] | None = None  # the register while many() holds it in memory

    @property
    def cert_path(self) -> Path:
        return self.dir / CA_CERT

    @property
    def crl_path(self) -> Path:
        return self.dir / CRL

    # -- creation -------------------------------------------------------------------------------
    @classmethod
    def create(cls, directory, *, name: str = "counterguard centre CA", days: int = 3650) -> "CertificateAuthority":
        directory = Path(directory)
        if (directory / CA_KEY).exists():
            raise ProvisionError(f"{directory / CA_KEY}: a CA already exists here; refusing to overwrite it")
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        write_private(directory / CA_KEY, key_pem(key))
        (directory / CA_CERT).write_bytes(cert_pem(cert))
        (directory / REGISTER).write_text("[]\n")
        ca = cls(directory)
        ca.write_crl()
        return ca

    # -- register -------------------------------------------------------------------------------
    @contextmanager
    def many(self):
        """Issue a fleet's certificates with one read and one write of the register: written once per
        certificate, a province's 20,000 gateways took time growing with the square of their number.
        What was issued is written when the block ends, by an error too."""
        self._held = self.register()
        try:
            yield self
        finally:
            held, self._held = self._held, None
            self._save_register(held)

    def register(self) -> list[dict]:
        if self._held is not None:
            return self._held
        path = self.dir / REGISTER
        try:
            return json.loads(path.read_text()) if path.exists() else []
        except ValueError as exc:
            raise ProvisionError(f"{path}: the certificate register is not JSON ({exc}); restore it from backup") from None

    def _save_register(self, entries: list[dict]) -> None:
        if self._held is not None:
            self._held = entries
            return
        tmp = self.dir / (REGISTER + ".tmp")
        tmp.write_text(json.dumps(entries, indent=1) + "\n")
        os.replace(tmp, self.dir / REGISTER)

    def current(self, cn: str) -> dict | None:
        """The newest unrevoked register entry for ``cn``."""
        live = [e for e in self.register() if e["cn"] == cn and not e.get("revoked_at")]
        return live[-1] if live else None

    def gateways(self) -> list[dict]:
        """One entry per gateway with a live certificate (newest), for the broker ACL."""
        seen = {}
        for entry in self.register():
            if entry["role"] == "gateway" and not entry.get("revoked_at"):
                seen[entry["cn"]] = entry
        return list(seen.values())

    def centre_workers(self) -> list[str]:
        return sorted({e["cn"] for e in self.register() if e["role"] == "centre" and not e.get("revoked_at")})

    # -- issuing --------------------------------------------------------------------------------
    def _sign(self, cn: str, public_key, role: str, days: int, hosts=()) -> x509.Certificate:
        now = _now()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if role == "broker" else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                                            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role)]))
                   .issuer_name(self.cert.subject).public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                                  critical=False))
        names = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        if role in CLIENT_ROLES:
            names.append(x509.UniformResourceIdentifier(identity_uri(cn, role)))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def _record(self, cert: x509.Certificate, role: str, **extra) -> None:
        entries = self.register()
        uri = certificate_uri(cert)
        entries.append({"serial": cert.serial_number, "cn": common_name(cert), "role": role,
                        "not_after": not_after(cert).isoformat(), "revoked_at": None,
                        **({"uri": uri} if uri else {}), **extra})
        self._save_register(entries)

    def issue(self, cn: str, *, role: str, out_dir, days: int = 365, region: str = "", branch: str = "",
              hosts=(), name: str | None = None) -> Issued:
        """A new key and certificate for ``cn`` written to ``out_dir`` as NAME.key (0600) and NAME.crt."""
        if role not in ROLES:
            raise ProvisionError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if not cn or any(c in cn for c in "/+#\0 ") or len(cn) > 64:
            raise ProvisionError(f"id {cn!r} must be 1-64 characters without '/', '+', '#' or spaces "
                                 "(it becomes the MQTT user name and a topic level)")
        if role == "gateway" and (not region or not branch):
            raise ProvisionError(f"gateway {cn}: region and branch are needed (they fix its topic root in the ACL)")
        if role == "gateway" and self.current(cn):
            raise ProvisionError(f"gateway {cn} already has a live certificate; use 'counterguard provision renew' "
                                 "or revoke it first")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._sign(cn, key.public_key(), role, days, hosts)
        stem = name or role
        write_private(out / f"{stem}.key", key_pem(key))
        (out / f"{stem}.crt").write_bytes(cert_pem(cert))
        extra = {"region": region, "branch": branch} if role == "gateway" else {}
        self._record(cert, role, **extra)
        return Issued(cn, cert.serial_number, out / f"{stem}.key", out / f"{stem}.crt", not_after(cert))

    def renew(self, cert_path, *, days: int = 365, within_days: int = RENEW_WITHIN_DAYS,
              force: bool = False) -> x509.Certificate | None:
        """Re-issue ``cert_path`` for the same key if it expires within ``within_days`` (or ``force``).

        The new certificate replaces the file; the old one stays valid until it expires (a gateway
        that has not received the new file yet keeps working). Returns None when no renewal is due.
        """
        cert_path = Path(cert_path)
        old = load_cert(cert_path)
        if old.issuer != self.cert.subject:
            raise ProvisionError(f"{cert_path}: issued by {old.issuer.rfc4514_string()}, not by this CA")
        cn = common_name(old)
        entry = next((e for e in self.register() if e["serial"] == old.serial_number), None)
        if entry is None:
            raise ProvisionError(f"{cert_path}: serial {old.serial_number} is not in {self.dir / REGISTER}")
        if entry.get("revoked_at"):
            raise ProvisionError(f"{cert_path}: certificate of {cn} was revoked on {entry['revoked_at']}; "
                                 "issue a new one instead")
        left = not_after(old) - _now()
        if not force and left > dt.timedelta(days=within_days):
            return None
        cert = self._sign(cn, old.public_key(), entry["role"], days)
        cert_path.write_bytes(cert_pem(cert))
        self._record(cert, entry["role"], **{k: entry[k] for k in ("region", "branch") if k in entry},
                     renewed_from=old.serial_number)
        return cert

    def revoke(self, cn_or_serial: str) -> list[int]:
        """Revoke every live certificate of an id (or one serial); rewrite the CRL; return the serials."""
        entries = self.register()
        hits = [e for e in entries if not e.get("revoked_at") and
                (e["cn"] == cn_or_serial or str(e["serial"]) == str(cn_or_serial))]
        if not hits:
            raise ProvisionError(f"no live certificate for {cn_or_serial!r} in {self.dir / REGISTER}")
        when = _now().isoformat()
        for entry in hits:
            entry["revoked_at"] = when
        self._save_register(entries)
        self.write_crl()
        return [e["serial"] for e in hits]

    def write_crl(self, days: int = CRL_DAYS) -> Path:
        """Write crl.pem listing every revoked serial, valid for ``days`` (re-run before it lapses)."""
        now = _now()
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
                   .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=days)))
        for entry in self.register():
            if entry.get("revoked_at"):
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder().serial_number(entry["serial"])
                    .revocation_date(dt.datetime.fromisoformat(entry["revoked_at"])).build())
        crl = builder.sign(self.key, hashes.SHA256())
        self.crl_path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return self.crl_path
