"""Signed manifests: what the centre signs is exactly what a gateway accepts, and nothing else."""

import base64
import hashlib
import hmac
import json
import stat

import pytest

from counterguard.core import manifest as m

ISSUED = "2026-11-25T09:00:00.000Z"
H1 = "a" * 64
H2 = "b" * 64


@pytest.fixture(scope="module")
def key():
    return m.generate_signing_key()


def thresholds(**over):
    body = {"kind": "thresholds", "version": 4, "issued_at": ISSUED, "target": "all", "amber": 0.4, "red": 0.8}
    body.update(over)
    return body


def watchlist(**over):
    body = {"kind": "watchlist", "version": 9, "issued_at": ISSUED, "target": "region/east", "full": True,
            "add": [H1, H2], "hash": "hmac-sha256", "key_version": 1}
    body.update(over)
    return body


def test_a_signed_manifest_opens_with_the_centre_public_key(key):
    payload = m.sign_envelope(thresholds(), key)
    assert m.open_envelope(payload, key.public_key(), topic="counterguard/v1/all/manifest/thresholds") == thresholds()


def test_encoding_is_canonical_whatever_the_key_order(key):
    a = m.encode_manifest(thresholds())
    b = m.encode_manifest(dict(reversed(list(thresholds().items()))))
    assert a == b
    assert json.loads(a) == thresholds()
    assert b" " not in a


def test_key_id_is_the_first_16_hex_of_sha256_of_the_raw_public_key(key):
    raw = key.public_key().public_bytes(m.serialization.Encoding.Raw, m.serialization.PublicFormat.Raw)
    assert len(raw) == 32
    assert m.key_id(key) == m.key_id(key.public_key()) == hashlib.sha256(raw).hexdigest()[:16]


def _tamper(payload: bytes, **fields) -> bytes:
    envelope = json.loads(payload)
    envelope.update(fields)
    return json.dumps(envelope).encode()


def test_an_altered_manifest_is_refused_as_a_bad_signature(key):
    envelope = json.loads(m.sign_envelope(thresholds(), key))
    altered = m.encode_manifest(thresholds(red=0.99))
    payload = _tamper(json.dumps(envelope).encode(), manifest=base64.b64encode(altered).decode())
    with pytest.raises(m.ManifestError, match="bad signature"):
        m.open_envelope(payload, key.public_key())


def test_a_manifest_signed_by_another_key_is_refused(key):
    rogue = m.generate_signing_key()
    with pytest.raises(m.ManifestError, match="key_id"):
        m.open_envelope(m.sign_envelope(thresholds(), rogue), key.public_key())
    # even when the rogue copies the real key_id, the signature does not verify
    forged = _tamper(m.sign_envelope(thresholds(), rogue), key_id=m.key_id(key))
    with pytest.raises(m.ManifestError, match="bad signature"):
        m.open_envelope(forged, key.public_key())


@pytest.mark.parametrize("payload, words", [
    (b"not json", "not JSON"),
    (b"[1]", "JSON object"),
    (b'{"manifest": "@@", "signature": "", "key_id": "KID"}', "not valid base64"),
    (b'{"signature": "", "key_id": "KID"}', '"manifest"'),
])
def test_a_malformed_envelope_names_what_is_wrong(key, payload, words):
    payload = payload.replace(b"KID", m.key_id(key).encode())
    with pytest.raises(m.ManifestError, match=words):
        m.open_envelope(payload, key.public_key())


@pytest.mark.parametrize("topic, words", [
    ("counterguard/v1/east/manifest/thresholds", "targets 'all'"),
    ("counterguard/v1/all/manifest/model", "thresholds manifest arrived on the model topic"),
    ("counterguard/v1/all/watchlist", "not a manifest topic"),
])
def test_a_manifest_on_the_wrong_topic_is_refused(key, topic, words):
    with pytest.raises(m.ManifestError, match=words):
        m.open_envelope(m.sign_envelope(thresholds(), key), key.public_key(), topic=topic)


@pytest.mark.parametrize("target, root, topic", [
    ("all", None, "counterguard/v1/all/manifest/watchlist"),
    ("region/east", None, "counterguard/v1/east/manifest/watchlist"),
    ("gateway/gw-7", "counterguard/v1/east/b12/gw-7", "counterguard/v1/east/b12/gw-7/manifest/watchlist"),
])
def test_targets_and_topics_map_both_ways(target, root, topic):
    assert m.manifest_topic(target, "watchlist", root=root) == topic
    assert m.target_of_topic(topic) == (target, "watchlist")


def test_a_gateway_subscribes_to_all_its_region_and_its_own_manifests():
    topics = m.gateway_manifest_topics("counterguard/v1/east/b12/gw-7", "east")
    assert len(topics) == 18  # all, region, own, for each of watchlist, model, thresholds, shadow and two lists
    assert "counterguard/v1/all/manifest/model" in topics
    assert "counterguard/v1/east/b12/gw-7/manifest/shadow" in topics
    assert "counterguard/v1/east/manifest/thresholds" in topics
    assert "counterguard/v1/east/b12/gw-7/manifest/watchlist" in topics


@pytest.mark.parametrize("body, words", [
    (thresholds(amber=0.9), "0 < amber < red"),
    (thresholds(red=float("nan")), '"red" must be a number'),
    (thresholds(version=0), '"version"'),
    (thresholds(version=True), '"version"'),
    (thresholds(issued_at="yesterday"), '"issued_at"'),
    (thresholds(target="branch/b12"), '"target"'),
    (thresholds(kind="firmware"), "kind 'firmware'"),
    (thresholds(colour="red"), "unknown field"),
    ({"kind": "thresholds", "version": 1}, 'missing "issued_at"'),
    (watchlist(add=["6217000099887766554"]), "an account number"),
    (watchlist(add=["XYZ"]), "hmac-sha256 hashes only"),
    (watchlist(hash="sha1"), '"hash"'),
    (watchlist(remove=[H1]), 'full watchlist has no "remove"'),
    (watchlist(full=False), '"base_version"'),
    (watchlist(key_version=0), '"key_version"'),
])
def test_bad_manifests_are_refused_with_the_field_named(key, body, words):
    with pytest.raises(m.ManifestError, match=words):
        m.encode_manifest(body)


def test_a_watchlist_delta_is_accepted(key):
    delta = watchlist(full=False, base_version=8, add=[H1], remove=[H2])
    assert m.open_envelope(m.sign_envelope(delta, key), key.public_key())["remove"] == [H2]


def test_a_model_manifest_carries_the_file_and_its_hash(key):
    tflite = b"TFL3" + bytes(range(256))
    body = m.model_manifest(tflite, {"features": ["amount"]}, version=3, model_version="2026.11",
                            target="all", issued_at=ISSUED)
    opened = m.open_envelope(m.sign_envelope(body, key), key.public_key())
    assert m.model_bytes(opened) == tflite
    opened["sha256"] = "0" * 64
    with pytest.raises(m.ManifestError, match="sha256 mismatch"):
        m.model_bytes(opened)


def test_account_hash_is_hmac_sha256_hex_of_the_digits():
    key = bytes(range(32))
    expected = hmac.new(key, b"6217000099887766554", hashlib.sha256).hexdigest()
    assert m.account_hash(key, "6217000099887766554") == expected
    assert m.account_hash(b"another key....." * 2, "6217000099887766554") != expected
    with pytest.raises(m.ManifestError, match="not an account number"):
        m.account_hash(key, "62-17")


def test_keys_round_trip_through_files_and_private_files_are_0600(tmp_path, key):
    m.save_private_key(key, tmp_path / "centre.pem")
    m.save_public_key(key, tmp_path / "centre.pub.pem")
    assert stat.S_IMODE((tmp_path / "centre.pem").stat().st_mode) == 0o600
    assert m.key_id(m.load_private_key(tmp_path / "centre.pem")) == m.key_id(key)
    assert m.key_id(m.load_public_key(tmp_path / "centre.pub.pem")) == m.key_id(key)
    wkey = m.generate_watchlist_key()
    m.save_watchlist_key(wkey, tmp_path / "watchlist.key")
    assert stat.S_IMODE((tmp_path / "watchlist.key").stat().st_mode) == 0o600
    assert m.load_watchlist_key(tmp_path / "watchlist.key") == wkey


def test_bad_key_files_name_the_file(tmp_path):
    with pytest.raises(m.ManifestError, match="missing.pem: no such"):
        m.load_public_key(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("hello")
    with pytest.raises(m.ManifestError, match="junk.pem: not a PEM"):
        m.load_public_key(tmp_path / "junk.pem")
    (tmp_path / "short.key").write_text("abcd")
    with pytest.raises(m.ManifestError, match="short.key: a watchlist key is at least 16 bytes"):
        m.load_watchlist_key(tmp_path / "short.key")
    (tmp_path / "bad.key").write_text("zz" * 32)
    with pytest.raises(m.ManifestError, match="bad.key: a watchlist key file holds hex"):
        m.load_watchlist_key(tmp_path / "bad.key")
