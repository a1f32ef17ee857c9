"""Signed manifests from the anti-fraud centre: the one place that encodes, signs and checks them.

The centre signs every model, thresholds and watchlist it pushes down with its Ed25519 key; a
gateway accepts one only if the signature verifies with the centre public key in its config. Both
ends use this module, so the bytes signed and the bytes verified cannot drift apart.

On the wire (MQTT, QoS 1, retained; see docs/mqtt.md and docs/security.md) a manifest travels in an
envelope::

    {"manifest": "<base64 of the manifest bytes>",
     "signature": "<base64 Ed25519 signature of exactly those bytes>",
     "key_id": "<first 16 hex chars of sha256 of the raw 32-byte public key>"}

The manifest itself is a UTF-8 JSON object with ``kind`` (watchlist | model | thresholds | shadow |
warned_persons | restricted_persons; a shadow carries a model like a model manifest, or
``"retire": true``; the two lists of persons are core/lists.py's),
``version`` (int, strictly increasing per kind), ``issued_at`` (RFC 3339) and ``target`` (``all``,
``region/{region}`` or ``gateway/{gateway_id}``, which must match the topic it came on), plus the
kind's own fields (checked by ``check_manifest``).

Centre side::

    key = generate_signing_key(); save_private_key(key, "centre-signing.pem")
    payload = sign_envelope({"kind": "thresholds", "version": 4, "issued_at": "2026-11-25T09:00:00Z",
                             "target": "all", "amber": 0.4, "red": 0.8}, key)
    client.publish(manifest_topic("all", "thresholds"), payload, qos=1, retain=True)

Gateway side::

    public = load_public_key("centre-public.pem")
    manifest = open_envelope(payload, public, topic=msg.topic)   # raises ManifestError
    model = model_bytes(manifest)                                # base64 decoded, sha256 checked

Watchlists carry keyed hashes, never account numbers: ``account_hash(key, "6217000099887766554")``
(lowercase hex HMAC-SHA256 of the digits). The key lives in a small file (``save_watchlist_key`` /
``load_watchlist_key``), hex encoded.

Every failure raises ``ManifestError`` whose message names what is wrong (the field, the file or
the check), so a gateway can log it in one line and keep its last-known-good.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import re
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from counterguard.core import jsontext
from counterguard.core.lists import MAX_PER_MANIFEST, RESTRICTED, WARNED, ListError, check_update

PREFIX = "counterguard/v1"
# "shadow": a challenger model scored beside the model in force, never deciding a verdict.
# "warned_persons" / "restricted_persons": the lists of persons (core/lists.py), keyed hashes only.
KINDS = ("watchlist", "model", "thresholds", "shadow", WARNED, RESTRICTED)
HASH_NAME = "hmac-sha256"
MAX_ENVELOPE_BYTES = 64 * 1024 * 1024  # a model is a few hundred kB; this stops a runaway payload
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ACCOUNT = re.compile(r"[0-9]{6,34}")
_COMMON = ("kind", "version", "issued_at", "target")
_FIELDS = {
    "watchlist": {"full", "base_version", "add", "remove", "hash", "key_version", "note"},
    # "rollback": back to an earlier model at once, even while red alerts are open (a broken model
    # must not keep deciding verdicts until the branch's alerts are cleared).
    "model": {"model_version", "tflite_b64", "sha256", "card", "note", "rollback"},
    "thresholds": {"amber", "red", "note"},
    "shadow": {"model_version", "tflite_b64", "sha256", "card", "note", "retire"},
    # "part" n of "parts": a full list too large for one message, in numbered parts of one version
    WARNED: {"full", "base_version", "add", "remove", "hash", "key_version", "note", "part", "parts"},
    RESTRICTED: {"full", "base_version", "add", "remove", "hash", "key_version", "note", "part", "parts"},
}


class ManifestError(ValueError):
    """A manifest, envelope, key or key file is not acceptable; the message says which and why."""


# -- keys -----------------------------------------------------------------------------------------
def generate_signing_key() -> Ed25519PrivateKey:
    """A new centre signing key (kept at the centre, never on a gateway)."""
    return Ed25519PrivateKey.generate()


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """First 16 hex chars of sha256 of the raw 32-byte public key (of a public or private key)."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise ManifestError(f"key_id needs an Ed25519 key, got {type(key).__name__}")
    return hashlib.sha256(_raw_public(key)).hexdigest()[:16]


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` created 0600 from the start (a key is never world-readable, not even
    briefly), through a temporary file, so a crash leaves the old key or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def save_private_key(key: Ed25519PrivateKey, path) -> Path:
    """Write ``key`` as unencrypted PKCS#8 PEM, mode 0600 (keep the file on the offline centre host)."""
    path = Path(path)
    write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path


def save_public_key(key: Ed25519PublicKey | Ed25519PrivateKey, path) -> Path:
    """Write the public half as SubjectPublicKeyInfo PEM (this is what goes into every gateway bundle)."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    path = Path(path)
    path.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such {what} file") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def load_private_key(path) -> Ed25519PrivateKey:
    """Read a PEM Ed25519 private key; ManifestError names the file if it is missing or not one."""
    path = Path(path)
    data = _read(path, "centre signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ManifestError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ManifestError(f"{path}: holds a {type(key).__name__}, the centre signs with Ed25519")
    return key


def load_public_key(path) -> Ed25519PublicKey:
    """Read a PEM Ed25519 public key (the centre's, on a gateway); ManifestError names the file."""
    path = Path(path)
    data = _read(path, "centre public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ManifestError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ManifestError(f"{path}: holds a {type(key).__name__}, the centre signs with Ed25519")
    return key


def generate_watchlist_key() -> bytes:
    """A new 32-byte watchlist hashing key."""
    return os.urandom(32)


def save_watchlist_key(key: bytes, path) -> Path:
    """Write the watchlist hashing key as hex, mode 0600."""
    if not isinstance(key, bytes) or len(key) < 16:
        raise ManifestError("a watchlist key is at least 16 random bytes")
    path = Path(path)
    write_private(path, key.hex().encode() + b"\n")
    return path


def load_watchlist_key(path) -> bytes:
    """Read a hex watchlist key file; ManifestError names the file if it is missing or malformed."""
    path = Path(path)
    text = _read(path, "watchlist key").decode("ascii", "replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ManifestError(f"{path}: a watchlist key file holds hex digits only") from None
    if len(key) < 16:
        raise ManifestError(f"{path}: a watchlist key is at least 16 bytes (32 hex digits), found {len(key)}")
    return key


def account_hash(key: bytes, account: str) -> str:
    """Keyed hash of an account number: lowercase hex HMAC-SHA256(key, digits as ASCII)."""
    if not isinstance(account, str) or not _ACCOUNT.fullmatch(account):
        raise ManifestError(f"{account!r} is not an account number of 6 to 34 digits")
    return hmac.new(key, account.encode("ascii"), hashlib.sha256).hexdigest()


def is_account_hash(value) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


# -- topics and targets ---------------------------------------------------------------------------
def manifest_topic(target: str, kind: str, *, root: str | None = None) -> str:
    """The topic a manifest for ``target`` is published on.

    ``all`` -> ``counterguard/v1/all/manifest/{kind}``; ``region/R`` -> ``counterguard/v1/R/manifest/{kind}``;
    ``gateway/G`` needs the gateway's ``root`` (``counterguard/v1/{region}/{branch}/G``).
    """
    _check_kind(kind)
    if target == "all":
        return f"{PREFIX}/all/manifest/{kind}"
    scope, _, name = target.partition("/") if isinstance(target, str) else ("", "", "")
    if not name or any(c in name for c in "/+#\0"):
        raise ManifestError(f'target {target!r} must be "all", "region/<region>" or "gateway/<gateway id>"')
    if scope == "region":
        return f"{PREFIX}/{name}/manifest/{kind}"
    if scope == "gateway":
        if not root or root.rsplit("/", 1)[-1] != name:
            raise ManifestError(f"target {target!r} needs the root topic of gateway {name!r}")
        return f"{root}/manifest/{kind}"
    raise ManifestError(f'target {target!r} must be "all", "region/<region>" or "gateway/<gateway id>"')


def target_of_topic(topic: str) -> tuple[str, str]:
    """``(target, kind)`` that a manifest topic stands for; ManifestError if it is not one."""
    parts = topic.split("/") if isinstance(topic, str) else []
    if len(parts) < 5 or "/".join(parts[:2]) != PREFIX or parts[-2] != "manifest":
        raise ManifestError(f"{topic!r} is not a manifest topic")
    kind = parts[-1]
    _check_kind(kind)
    scope = parts[2:-2]
    if scope == ["all"]:
        return "all", kind
    if len(scope) == 1:
        return f"region/{scope[0]}", kind
    if len(scope) == 3:
        return f"gateway/{scope[2]}", kind
    raise ManifestError(f"{topic!r} is not a manifest topic")


def gateway_manifest_topics(root: str, region: str) -> tuple[str, ...]:
    """The manifest topics one gateway subscribes to: all, its region and its own, for every kind."""
    return tuple(t for kind in KINDS for t in (f"{PREFIX}/all/manifest/{kind}",
                                               f"{PREFIX}/{region}/manifest/{kind}",
                                               f"{root}/manifest/{kind}"))


# -- manifests ------------------------------------------------------------------------------------
def _check_kind(kind) -> None:
    if kind not in KINDS:
        raise ManifestError(f"kind {kind!r} is not one of {', '.join(KINDS)}")


def _int(manifest: dict, name: str, lo: int) -> int:
    value = manifest.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ManifestError(f'"{name}" must be a whole number of at least {lo}, got {value!r}')
    return value


def _hashes(manifest: dict, name: str) -> list:
    value = manifest.get(name, [])
    if not isinstance(value, list):
        raise ManifestError(f'"{name}" must be a list of keyed account hashes')
    for entry in value:
        if not is_account_hash(entry):
            shown = "an account number" if isinstance(entry, str) and _ACCOUNT.fullmatch(entry) else repr(entry)[:40]
            raise ManifestError(f'"{name}" holds {shown}; a watchlist carries 64-hex-digit {HASH_NAME} hashes only')
    return value


def check_manifest(manifest) -> dict:
    """Check a manifest's fields (common and per kind); return it unchanged or raise ManifestError."""
    if not isinstance(manifest, dict):
        raise ManifestError("a manifest must be a JSON object")
    for name in _COMMON:
        if name not in manifest:
            raise ManifestError(f'manifest is missing "{name}"')
    kind = manifest["kind"]
    _check_kind(kind)
    unknown = set(manifest) - set(_COMMON) - _FIELDS[kind]
    if unknown:
        raise ManifestError(f"{kind} manifest has unknown field(s) {', '.join(sorted(unknown))}")
    _int(manifest, "version", 1)
    issued = manifest["issued_at"]
    try:
        datetime.fromisoformat(issued.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise ManifestError(f'"issued_at" must be an RFC 3339 time, got {issued!r}') from None
    target = manifest["target"]
    if target != "all":
        scope, _, name = target.partition("/") if isinstance(target, str) else ("", "", "")
        if scope not in ("region", "gateway") or not name or any(c in name for c in "/+#\0"):
            raise ManifestError(f'"target" must be "all", "region/<region>" or "gateway/<gateway id>", got {target!r}')
    if kind == "watchlist":
        if not isinstance(manifest.get("full"), bool):
            raise ManifestError('"full" must be true (replace the list) or false (a delta)')
        if manifest.get("hash") != HASH_NAME:
            raise ManifestError(f'"hash" must be "{HASH_NAME}", got {manifest.get("hash")!r}')
        _int(manifest, "key_version", 1)
        _hashes(manifest, "add")
        _hashes(manifest, "remove")
        if manifest["full"]:
            if manifest.get("remove"):
                raise ManifestError('a full watchlist has no "remove"; send every entry in "add"')
        else:
            _int(manifest, "base_version", 0)
    elif kind in (WARNED, RESTRICTED):
        if manifest.get("hash") != HASH_NAME:
            raise ManifestError(f'"hash" must be "{HASH_NAME}", got {manifest.get("hash")!r}')
        _int(manifest, "key_version", 1)
        if not manifest.get("full"):
            _int(manifest, "base_version", 0)
        else:
            parts = _int(manifest, "parts", 1) if "parts" in manifest else 1
            if not 1 <= (_int(manifest, "part", 1) if "part" in manifest else 1) <= parts:
                raise ManifestError('"part" must be between 1 and "parts"')
        try:
            add, remove = check_update(kind, manifest)
        except ListError as exc:
            raise ManifestError(str(exc)) from None
        if len(add) + len(remove) > MAX_PER_MANIFEST:
            raise ManifestError(f"a list manifest carries at most {MAX_PER_MANIFEST} entries (the broker's message "
                                "limit); split the change into several versions or parts")
    elif kind == "shadow" and manifest.get("retire") is not None:
        if manifest["retire"] is not True or set(manifest) & {"model_version", "tflite_b64", "sha256", "card"}:
            raise ManifestError('a shadow manifest that retires the challenger has "retire": true and no model')
    elif kind in ("model", "shadow"):
        for name in ("model_version", "tflite_b64", "sha256"):
            if not isinstance(manifest.get(name), str) or not manifest[name]:
                raise ManifestError(f'model manifest needs "{name}" as a non-empty string')
        if not _HEX64.fullmatch(manifest["sha256"]):
            raise ManifestError('"sha256" must be 64 lowercase hex digits')
        if not isinstance(manifest.get("card"), dict):
            raise ManifestError('model manifest needs "card", the model\'s JSON sidecar, as an object')
        if not isinstance(manifest.get("rollback", False), bool):
            raise ManifestError('"rollback" must be true or false')
    else:
        amber, red = manifest.get("amber"), manifest.get("red")
        for name, value in (("amber", amber), ("red", red)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ManifestError(f'"{name}" must be a number, got {value!r}')
        if not 0 < amber < red <= 1:
            raise ManifestError(f"thresholds need 0 < amber < red <= 1, got amber {amber} and red {red}")
    return manifest


def encode_manifest(manifest: dict) -> bytes:
    """Canonical bytes of a manifest: checked, then JSON with sorted keys, no spaces, UTF-8."""
    check_manifest(manifest)
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def sign_envelope(manifest: dict, private_key: Ed25519PrivateKey) -> bytes:
    """The envelope (JSON bytes, ready to publish) carrying ``manifest`` signed with ``private_key``."""
    data = encode_manifest(manifest)
    return json.dumps({
        "manifest": base64.b64encode(data).decode("ascii"),
        "signature": base64.b64encode(private_key.sign(data)).decode("ascii"),
        "key_id": key_id(private_key),
    }, separators=(",", ":")).encode("ascii")


def _b64(envelope: dict, name: str) -> bytes:
    value = envelope.get(name)
    if not isinstance(value, str):
        raise ManifestError(f'envelope is missing "{name}" (base64 text)')
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ManifestError(f'envelope "{name}" is not valid base64') from None


def open_envelope(payload: bytes, public_key: Ed25519PublicKey, *, topic: str | None = None) -> dict:
    """Verify an envelope and return its checked manifest; raise ManifestError saying what failed.

    Checks, in order: JSON envelope, ``key_id`` is this public key's, Ed25519 signature over the
    manifest bytes, manifest fields, and (with ``topic``) that its target and kind match the topic.
    Version order (replay) is the receiver's to check: only it knows the version in force.
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if len(payload) > MAX_ENVELOPE_BYTES:
        raise ManifestError(f"envelope of {len(payload)} bytes is larger than the {MAX_ENVELOPE_BYTES} accepted")
    try:
        envelope = jsontext.loads(payload)
    except ValueError as exc:  # a flood of '[' is refused and counted like any other bad envelope
        raise ManifestError(f"envelope is not JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise ManifestError("envelope must be a JSON object with manifest, signature and key_id")
    expected = key_id(public_key)
    if envelope.get("key_id") != expected:
        raise ManifestError(f"envelope key_id {envelope.get('key_id')!r} is not the centre key configured here "
                            f"({expected}); check downlink.centre_public_key")
    data = _b64(envelope, "manifest")
    signature = _b64(envelope, "signature")
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        raise ManifestError("bad signature: the manifest was not signed by the centre key "
                            f"{expected} or was altered on the way") from None
    try:
        manifest = jsontext.loads(data)
    except ValueError as exc:
        raise ManifestError(f"signed manifest is not UTF-8 JSON: {exc}") from None
    check_manifest(manifest)
    if topic is not None:
        target, kind = target_of_topic(topic)
        if manifest["kind"] != kind:
            raise ManifestError(f"a {manifest['kind']} manifest arrived on the {kind} topic {topic}")
        if manifest["target"] != target:
            raise ManifestError(f"manifest targets {manifest['target']!r} but came on {topic} (target {target!r})")
    return manifest


def model_manifest(tflite: bytes, card: dict, *, version: int, model_version: str, target: str,
                   issued_at: str) -> dict:
    """A model manifest for the bytes of a .tflite file and its JSON sidecar (centre side)."""
    return {"kind": "model", "version": version, "issued_at": issued_at, "target": target,
            "model_version": model_version, "tflite_b64": base64.b64encode(tflite).decode("ascii"),
            "sha256": hashlib.sha256(tflite).hexdigest(), "card": card}


def model_bytes(manifest: dict) -> bytes:
    """The model file carried by a model manifest, after checking its sha256."""
    try:
        data = base64.b64decode(manifest["tflite_b64"], validate=True)
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ManifestError('"tflite_b64" is not valid base64') from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest.get("sha256"):
        raise ManifestError(f"model sha256 mismatch: manifest says {manifest.get('sha256')}, bytes hash to {digest}")
    return data
