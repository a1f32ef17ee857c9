"""The clustered broker's generated configs (no server needed): the per-gateway permissions are the
mosquitto ACL's topics, a name NATS cannot carry is refused, and a revoked certificate's name is left
out of the user list."""

from __future__ import annotations

import pytest

from counterguard.provisioning.broker_config import gateway_reads, gateway_writes
from counterguard.provisioning.ca import CertificateAuthority, ProvisionError
from counterguard.provisioning.nats_config import dn, nats_users, subject, write_cluster_configs


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
    line = next(l for l in users.splitlines() if dn("gw-a", "gateway") in l)
    for topic in (*gateway_writes(gw), *gateway_reads(gw)):
        assert f'"{subject(topic)}"' in line
    assert "counterguard.v1.>" not in line            # no wildcard over the tree for a gateway
    assert dn("centre-1", "centre") in users
    ca.revoke("gw-a")
    assert dn("gw-a", "gateway") not in nats_users(ca)


def test_three_node_configs_route_to_each_other_and_replicate_mqtt_state(ca, tmp_path):
    confs = write_cluster_configs(ca, tmp_path / "broker", nodes=3, base_port=14200)
    text = confs[0].read_text()
    assert "server_name: n1" in text and "stream_replicas: 3" in text and "verify_and_map: true" in text
    assert "nats-route://127.0.0.1:14212" in text and "nats-route://127.0.0.1:14222" in text
    assert "nats-route://127.0.0.1:14202" not in text  # not to itself
    with pytest.raises(ProvisionError, match="1 to 9 nodes"):
        write_cluster_configs(ca, tmp_path / "b2", nodes=0)
