"""The clustered broker's generated configs (no server needed): the per-gateway permissions are the
mosquitto ACL's topics, a name NATS cannot carry is refused, a revoked certificate's name is left
out of the user list, and a certificate from before certificates carried their URI keeps a user
named by its subject."""

from __future__ import annotations

import pytest

from counterguard.provisioning.broker_config import gateway_reads, gateway_writes
from counterguard.provisioning.ca import CertificateAuthority, ProvisionError, certificate_uri, identity_uri, load_cert
from counterguard.provisioning.nats_config import dn, nats_users, subject, write_cluster_configs

from pki_support import issue_without_uri


@pytest.fixture
def ca(tmp_path):
    ca = CertificateAuthority.create(tmp_path / "ca")
    ca.issue("gw-a", role="gateway", region="east", branch="b012", out_dir=tmp_path / "gw-a")
    ca.issue("centre-1", role="centre", out_dir=tmp_path / "centre")
    return ca


def test_mqtt_topic_filters_become_nats_subjects():
    assert subject("counterguard/v1/+/+/+/alert") == "counterguard.v1.*.*.*.alert"
    assert subject("counterguard/v1/#") == "counterguard.v1.>"
    with pytest.raises(ProvisionError, match="without dots"):
        subject("counterguard/v1/east.1/b/gw/alert")


def test_each_gateway_gets_exactly_its_acl_topics_and_a_revoked_one_nothing(ca):
    users = nats_users(ca)
    gw = next(g for g in ca.gateways() if g["cn"] == "gw-a")
    line = next(l for l in users.splitlines() if f'user: "{identity_uri("gw-a", "gateway")}"' in l)
    for topic in (*gateway_writes(gw), *gateway_reads(gw)):
        assert f'"{subject(topic)}"' in line
    assert "counterguard.v1.>" not in line            # no wildcard over the tree for a gateway
    assert f'user: "{identity_uri("centre-1", "centre")}"' in users
    assert dn("gw-a", "gateway") not in users          # its certificate carries the URI
    ca.revoke("gw-a")
    assert "gw-a" not in nats_users(ca)


def test_certificates_name_their_holder_by_a_uri_that_survives_renewal(ca, tmp_path):
    cert = load_cert(tmp_path / "gw-a" / "gateway.crt")
    assert certificate_uri(cert) == "urn:counterguard:gateway:gw-a"
    assert certificate_uri(load_cert(tmp_path / "centre" / "centre.crt")) == "urn:counterguard:centre:centre-1"
    renewed = ca.renew(tmp_path / "gw-a" / "gateway.crt", force=True)
    assert certificate_uri(renewed) == "urn:counterguard:gateway:gw-a"
    assert all(e.get("uri") for e in ca.register())
    # An id with characters a URI may not hold is escaped, not refused.
    assert identity_uri("gw:a%1", "gateway") == "urn:counterguard:gateway:gw%3Aa%251"


def test_a_certificate_from_before_the_uri_keeps_a_user_named_by_its_subject(ca, tmp_path):
    issue_without_uri(ca, "gw-old", tmp_path / "gw-old", region="east", branch="b014")
    users = nats_users(ca).splitlines()
    old = [l for l in users if "east.b014.gw-old" in l]
    assert {l.split('"')[1] for l in old} == {dn("gw-old", "gateway"), identity_uri("gw-old", "gateway")}
    assert len({l.split("permissions:")[1] for l in old}) == 1  # the same topics under both names
    # Renewed, it has both certificates until the old one expires; revoked, neither name is left.
    ca.renew(tmp_path / "gw-old" / "gateway.crt", force=True)
    assert dn("gw-old", "gateway") in nats_users(ca)
    ca.revoke("gw-old")
    assert "gw-old" not in nats_users(ca)


def test_three_node_configs_route_to_each_other_and_replicate_mqtt_state(ca, tmp_path):
    confs = write_cluster_configs(ca, tmp_path / "broker", nodes=3, base_port=14200)
    text = confs[0].read_text()
    assert "server_name: n1" in text and "stream_replicas: 3" in text and "verify_and_map: true" in text
    assert "nats-route://127.0.0.1:14212" in text and "nats-route://127.0.0.1:14222" in text
    assert "nats-route://127.0.0.1:14202" not in text  # not to itself
    with pytest.raises(ProvisionError, match="1 to 9 nodes"):
        write_cluster_configs(ca, tmp_path / "b2", nodes=0)
