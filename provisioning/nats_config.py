"""A clustered centre broker: nats-server configs (JetStream + MQTT) with the same certificates,
topics and per-gateway permissions as the single mosquitto (provisioning/broker_config.py).

Every node takes MQTT from the gateways on a TLS listener that demands a certificate from the
centre CA and maps it to a user (``verify_and_map``) named by the URI the certificate carries:
``urn:counterguard:gateway:gw-a``. NATS looks a URI up in one step, but compares a certificate's
subject with every user in turn, holding the server's lock: with 10,000 gateways that made each
connection cost 12.5-19.7 ms instead of 1.6-1.7 ms (bench/user_lookup.py), and a fleet coming
back after a restart queued behind it. A certificate issued before it carried the URI keeps a user
named by its subject, ``CN=gw-a,OU=gateway``, until it is renewed (``provision renew``). The
permissions of that user are the mosquitto ACL in NATS subjects (an MQTT topic ``a/b/c`` is the
subject ``a.b.c``): a gateway publishes exactly ``Topics.published`` and subscribes exactly to its
receipts, the manifests and watchlists meant for it and the centre status. Centre workers use the
NATS client port with their own certificates and may read and write everything under the prefix,
plus the JetStream API they consume through. A certificate whose names are in no user block
gets nothing.

JetStream keeps MQTT sessions, retained messages and QoS 1 messages in streams replicated on
every node (``stream_replicas``), so one node lost loses no message a gateway was told was kept.

What NATS 2.9 does not do that mosquitto does (docs/cluster.md says what stands in for it):
no CRL file (revoked names are left out of the user list, see ``nats_users``), and the MQTT
client id is not tied to the certificate.

    write_cluster_configs(ca, "cluster/", nodes=3, base_port=14200)
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from counterguard.core.messages import PREFIX
from counterguard.provisioning.broker_config import MESSAGE_SIZE_LIMIT, gateway_reads, gateway_writes
from counterguard.provisioning.ca import CA_CERT, CertificateAuthority, ProvisionError, identity_uri

CLUSTER_NAME = "counterguard"
# The certificate the launcher issues its own centre workers (the CA register may hold others).
CLUSTER_WORKER = "centre-cluster"
# The JetStream stream the centre workers consume from, in the centre's own account.
INTAKE_STREAM = "CENTRE_INTAKE"
# Where nats-server hands an MQTT session its QoS 1 messages (a random name per subscription).
MQTT_DELIVERY = "$MQTT.sub.>"


def subject(topic: str) -> str:
    """An MQTT topic filter as a NATS subject: ``/`` -> ``.``, ``+`` -> ``*``, ``#`` -> ``>``."""
    if "." in topic or " " in topic:
        raise ProvisionError(f"topic {topic!r} has a '.' or a space: NATS cannot carry it to MQTT clients; "
                             "give the region, branch and gateway ids without dots")
    return ".".join({"+": "*", "#": ">"}.get(level, level) for level in topic.split("/"))


def dn(cn: str, role: str) -> str:
    """The user name NATS maps a centre-CA certificate to (its subject, RFC 2253 order)."""
    return f"CN={cn},OU={role}"


def _quote(items) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def user_names(cn: str, role: str, by_subject: set) -> list[str]:
    """The NATS user names of ``cn``: its URI, and its subject while it holds a certificate issued
    before certificates carried the URI (``by_subject``: the (cn, role) pairs that do)."""
    return [identity_uri(cn, role)] + ([dn(cn, role)] if (cn, role) in by_subject else [])


def nats_users(ca: CertificateAuthority) -> str:
    """The ``authorization`` block: the users of every live gateway and centre worker certificate."""
    now = dt.datetime.now(dt.timezone.utc)
    by_subject = {(e["cn"], e["role"]) for e in ca.register()
                  if "uri" not in e and not e.get("revoked_at") and dt.datetime.fromisoformat(e["not_after"]) > now}
    lines = ["authorization {", "  users = ["]
    for worker in ca.centre_workers():
        # Workers consume through JetStream (its API and their own inboxes) and read/write the tree.
        allow = [subject(PREFIX), f"{subject(PREFIX)}.>", "$JS.API.>", "$JS.ACK.>", "_INBOX.>", "$MQTT.>"]
        for name in user_names(worker, "centre", by_subject):
            lines.append(f'    {{user: "{name}", permissions: {{publish: {_quote(allow)}, '
                         f'subscribe: {_quote(allow)}}}}}')
    for gw in sorted(ca.gateways(), key=lambda g: g["cn"]):
        pub = [subject(t) for t in gateway_writes(gw)]
        # QoS 1 deliveries reach an MQTT session through an internal subject of its own.
        sub = [subject(t) for t in gateway_reads(gw)] + [MQTT_DELIVERY]
        for name in user_names(gw["cn"], "gateway", by_subject):
            lines.append(f'    {{user: "{name}", permissions: {{publish: {_quote(pub)}, '
                         f'subscribe: {_quote(sub)}}}}}')
    lines += ["  ]", "}"]
    return "\n".join(lines)


@dataclass(frozen=True)
class NodePorts:
    client: int   # NATS clients: the centre workers
    mqtt: int     # MQTT with mTLS: the gateways
    route: int    # the other nodes
    monitor: int  # http://127.0.0.1:PORT/healthz


def node_ports(base_port: int, index: int) -> NodePorts:
    p = base_port + 10 * index
    return NodePorts(client=p, mqtt=p + 1, route=p + 2, monitor=p + 3)


def node_conf(directory: Path, index: int, *, nodes: int, base_port: int, host: str = "127.0.0.1",
              users: str, message_size_limit: int = MESSAGE_SIZE_LIMIT) -> str:
    d = Path(directory).resolve()
    ports = node_ports(base_port, index)
    routes = [f"nats-route://{host}:{node_ports(base_port, i).route}" for i in range(nodes) if i != index]
    tls = (f'    ca_file: "{d / CA_CERT}"\n    cert_file: "{d / "broker.crt"}"\n'
           f'    key_file: "{d / "broker.key"}"\n    verify_and_map: true\n    timeout: 5')
    replicas = min(3, nodes)
    return f"""# counterguard centre cluster node n{index + 1}, generated by 'counterguard centre cluster up'; do not edit.
server_name: n{index + 1}
listen: "{host}:{ports.client}"
http: "{host}:{ports.monitor}"
max_payload: {message_size_limit}
pid_file: "{d / f"n{index + 1}.pid"}"
jetstream {{
  store_dir: "{d / f"n{index + 1}"}"
  max_memory_store: 64MB
  max_file_store: 2GB
}}
cluster {{
  name: {CLUSTER_NAME}
  listen: "{host}:{ports.route}"
  routes: [{", ".join(routes)}]
}}
tls {{
{tls}
}}
mqtt {{
  listen: "{host}:{ports.mqtt}"
  tls {{
{tls}
  }}
  # Sessions, retained messages and QoS 1 messages live on every node.
  stream_replicas: {replicas}
  # A QoS 1 message unacknowledged this long is sent to the client again.
  ack_wait: "30s"
  # Each QoS 1 subscription is a JetStream consumer. A clean session's reconnect first deletes the
  # old session's consumers, which needs each consumer's leader: with one replica on a lost node
  # the gateway would be refused on every other node until that node came back. So consumers are
  # replicated like the streams, kept in memory (they are rebuilt by the session anyway).
  consumer_replicas: {replicas}
  consumer_memory_storage: true
}}
{users}
"""


def write_cluster_configs(ca: CertificateAuthority, out_dir, *, nodes: int = 3, base_port: int = 14200,
                          host: str = "127.0.0.1", hostnames=("localhost", "127.0.0.1"), days: int = 365,
                          message_size_limit: int = MESSAGE_SIZE_LIMIT) -> list[Path]:
    """Write n1.conf .. nN.conf, ca.crt and (once) one broker certificate for every node into
    ``out_dir``; re-run after issuing or revoking a certificate, then reload the nodes (SIGHUP).
    Returns the config paths."""
    if not 1 <= nodes <= 9:
        raise ProvisionError(f"--nodes {nodes}: a cluster has 1 to 9 nodes (3 survives one lost node)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "broker.crt").exists():
        names = tuple(dict.fromkeys([*hostnames, host]))
        ca.issue(names[0], role="broker", out_dir=out, days=days, hosts=names, name="broker")
    shutil.copyfile(ca.cert_path, out / CA_CERT)
    users = nats_users(ca)
    confs = []
    for i in range(nodes):
        conf = out / f"n{i + 1}.conf"
        conf.write_text(node_conf(out, i, nodes=nodes, base_port=base_port, host=host, users=users,
                                  message_size_limit=message_size_limit))
        os.chmod(conf, 0o644)
        confs.append(conf)
    os.chmod(out / "broker.key", stat.S_IRUSR | stat.S_IWUSR)
    return confs


def prepare_cluster(directory, *, nodes: int, base_port: int, ca_dir=None) -> Path:
    """What ``counterguard centre cluster up`` needs before it starts nodes: the CA (made in
    DIR/ca unless ``ca_dir`` names one), the launcher's centre worker certificate in DIR/centre,
    and the node configs in DIR/broker. Idempotent; returns the CA folder."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca_path = Path(ca_dir) if ca_dir else d / "ca"
    ca = CertificateAuthority(ca_path) if ca_dir or (ca_path / CA_CERT).exists() else CertificateAuthority.create(ca_path)
    if not (d / "centre" / "centre.crt").exists():
        ca.issue(CLUSTER_WORKER, role="centre", out_dir=d / "centre")
    write_cluster_configs(ca, d / "broker", nodes=nodes, base_port=base_port)
    return ca_path


def main(argv=None) -> int:
    """``python -m counterguard.provisioning.nats_config DIR NODES BASE_PORT [CA_DIR]``: the centre's
    cluster launcher calls this (the centre itself never holds the CA)."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        ca_path = prepare_cluster(args[0], nodes=int(args[1]), base_port=int(args[2]),
                                  ca_dir=args[3] if len(args) > 3 and args[3] else None)
    except ProvisionError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(ca_path.resolve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
