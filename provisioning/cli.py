"""``counterguard provision ...`` (on the centre's offline CA workstation) and ``counterguard doctor``
(on a gateway). docs/provisioning.md walks through both."""

from __future__ import annotations

import sys
from pathlib import Path

GATEWAY_ETC = Path("/etc/counterguard")


def _ca(args):
    from counterguard.provisioning.ca import CertificateAuthority

    return CertificateAuthority(args.ca)


def _cmd_ca(args) -> int:
    from counterguard.provisioning.ca import CertificateAuthority

    if GATEWAY_ETC.joinpath("config.toml").exists():
        print(f"WARNING: {GATEWAY_ETC}/config.toml exists: this looks like a gateway. The CA key must live only "
              "on the centre's offline CA machine, never on a gateway.", file=sys.stderr)
    ca = CertificateAuthority.create(args.dir, name=args.name, days=args.days)
    print(f"CA created in {ca.dir}: {ca.cert_path.name} (give to gateways and the broker), ca.key (keep offline, "
          f"back it up), crl.pem; valid until {ca.cert.not_valid_after_utc:%Y-%m-%d}")
    return 0


def _cmd_centre_keys(args) -> int:
    from counterguard.core import manifest

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    signing, public, wkey = out / "centre-signing.pem", out / "centre-public.pem", out / "watchlist.key"
    for path in (signing, wkey):
        if path.exists():
            print(f"counterguard provision: {path} exists; refusing to replace a key in use", file=sys.stderr)
            return 1
    key = manifest.generate_signing_key()
    manifest.save_private_key(key, signing)
    manifest.save_public_key(key, public)
    manifest.save_watchlist_key(manifest.generate_watchlist_key(), wkey)
    print(f"{signing} (centre only: signs models, thresholds and watchlists), {public} (into every bundle), "
          f"{wkey} (hashes the stop-payment list; centre and bundles); key id {manifest.key_id(key)}")
    return 0


def _branch(args):
    from counterguard.provisioning.install import Branch

    return Branch(gateway_id=args.id, region=args.region, branch=args.branch, counters=args.counters,
                  pinmap=args.pinmap, broker_host=args.broker_host, broker_port=args.broker_port,
                  ports=tuple(args.ports or ()))


def _centre(args):
    from counterguard.provisioning.bundle import CentreFiles

    return CentreFiles(Path(args.centre_public_key), Path(args.watchlist_key)).check()


def _cmd_gateway(args) -> int:
    from counterguard.provisioning.bundle import write_bundle

    out = write_bundle(_ca(args), _branch(args), args.out, _centre(args), days=args.days)
    print(f"bundle for {args.id} in {out}: copy it to the gateway and run install.sh as root")
    return 0


def _cmd_worker(args) -> int:
    issued = _ca(args).issue(args.id, role="centre", out_dir=args.out, days=args.days, name="centre")
    print(f"centre worker {args.id}: {issued.cert_path}, {issued.key_path}; valid until {issued.not_after:%Y-%m-%d}. "
          "Regenerate the broker config so the ACL includes it.")
    return 0


def _cmd_batch(args) -> int:
    from counterguard.provisioning.bundle import batch

    done, problems = batch(_ca(args), args.csv, args.out, _centre(args), days=args.days)
    for problem in problems:
        print(f"FAILED {problem}", file=sys.stderr)
    print(f"{len(done)} bundle(s) in {args.out}; {len(problems)} failed"
          + ("" if not problems else " (fix those rows and run the batch again: finished bundles are kept)"))
    return 1 if problems else 0


def _cmd_renew(args) -> int:
    ca = _ca(args)
    certs = [Path(p) for p in args.certs]
    if args.bundles:
        certs += sorted(Path(args.bundles).glob("*/gateway.crt"))
    if not certs:
        print("counterguard provision renew: name certificates or --bundles DIR", file=sys.stderr)
        return 2
    from counterguard.provisioning.ca import ProvisionError

    renewed, failed = 0, 0
    for path in certs:
        try:
            cert = ca.renew(path, days=args.days, within_days=args.within_days, force=args.force)
        except ProvisionError as exc:  # one bad certificate does not stop the others' renewal
            failed += 1
            print(f"counterguard: {exc}", file=sys.stderr)
            continue
        if cert is None:
            print(f"{path}: not due (renewal starts {args.within_days} days before expiry)")
        else:
            renewed += 1
            print(f"{path}: renewed, valid until {cert.not_valid_after_utc:%Y-%m-%d}; copy it to the gateway "
                  "(/etc/counterguard/gateway.crt) and restart counterguard")
    print(f"{renewed} renewed, {failed} failed")
    return 1 if failed else 0


def _cmd_revoke(args) -> int:
    serials = _ca(args).revoke(args.id)
    print(f"revoked {args.id} (serial {', '.join(map(str, serials))}); crl.pem rewritten. Now run "
          "'counterguard provision broker-config' and restart the broker so it refuses the certificate.")
    return 0


def _cmd_broker_config(args) -> int:
    from counterguard.provisioning.broker_config import MESSAGE_SIZE_LIMIT, write_broker_config

    notes: list[str] = []
    conf = write_broker_config(_ca(args), args.out, host=args.host, port=args.port,
                               hostnames=tuple(args.hostname or ("localhost", "127.0.0.1")), run_as=args.user,
                               message_size_limit=args.message_size_limit or MESSAGE_SIZE_LIMIT, notes=notes)
    for note in notes:
        print(f"NOTE {note}", file=sys.stderr)
    print(f"{conf}: mosquitto -c {conf} (TLS with client certificates, CRL and ACL; restart after changes)")
    return 0


def _cmd_doctor(args) -> int:
    from counterguard.gateway.ops.doctor import run_doctor

    return run_doctor(args.config, sys.stdout)


def add_commands(sub) -> None:
    p = sub.add_parser("provision", help="certificates, broker config and gateway bundles (centre CA workstation)",
                       description="Run on the centre's offline CA workstation: create the CA and centre keys, "
                                   "issue gateway bundles (one or a CSV batch), renew and revoke certificates, "
                                   "generate the broker's mosquitto config. See docs/provisioning.md.")
    psub = p.add_subparsers(dest="provision_command", metavar="STEP", required=True)

    def ca_arg(q):
        q.add_argument("--ca", required=True, metavar="DIR", help="the CA directory (from 'provision ca')")

    def centre_args(q):
        q.add_argument("--centre-public-key", required=True, metavar="PEM", help="centre-public.pem")
        q.add_argument("--watchlist-key", required=True, metavar="FILE", help="watchlist.key")
        q.add_argument("--days", type=int, default=365, help="certificate lifetime in days (default 365)")

    q = psub.add_parser("ca", help="create the centre certificate authority",
                        description="Create a CA in DIR (ca.key stays offline; ca.crt goes everywhere).")
    q.add_argument("--dir", required=True, help="directory for ca.key, ca.crt and the CA's records (created)")
    q.add_argument("--name", default="counterguard centre CA", help="the CA certificate's common name")
    q.add_argument("--days", type=int, default=3650, help="CA certificate lifetime in days (default 3650)")
    q.set_defaults(func=_friendly(_cmd_ca))

    q = psub.add_parser("centre-keys", help="create the centre's signing key and the watchlist hashing key",
                        description="Write centre-signing.pem (Ed25519, centre only), centre-public.pem and "
                                    "watchlist.key into OUT; refuses to replace existing keys.")
    q.add_argument("--out", required=True, help="directory to write the keys to (created)")
    q.set_defaults(func=_friendly(_cmd_centre_keys))

    q = psub.add_parser("gateway", help="issue one gateway's key, certificate and bundle",
                        description="Write OUT/<id>/ with config, key, certificates, systemd unit, udev rule "
                                    "and install.sh for one branch gateway.")
    ca_arg(q)
    q.add_argument("--id", required=True, help="gateway id (certificate CN, MQTT user)")
    q.add_argument("--region", required=True, help="region code (MQTT topic tree)")
    q.add_argument("--branch", required=True, help="branch or outlet code (MQTT topic tree)")
    q.add_argument("--counters", type=int, default=4, help="counters at the branch (default 4)")
    q.add_argument("--pinmap", default="pi4-4counter", help="shipped pin map name or a .toml file")
    q.add_argument("--broker-host", default="mqtt.centre.example", help="the centre broker's name, as in its certificate")
    q.add_argument("--broker-port", type=int, default=8883, help="the centre broker's TLS port (default 8883)")
    q.add_argument("--ports", nargs="*", help="per counter: serial:<USB serial> or usb:<KERNELS> (default: board sockets)")
    q.add_argument("--out", required=True, help="where bundles are written")
    centre_args(q)
    q.set_defaults(func=_friendly(_cmd_gateway))

    q = psub.add_parser("batch", help="bundles for every branch in a CSV, with a progress bar",
                        description="One bundle per row of the branches CSV (docs/provisioning.md lists the "
                                    "columns). Finished bundles are kept on a re-run.")
    ca_arg(q)
    q.add_argument("--csv", required=True, help="the branches CSV, one row per gateway (columns in docs/provisioning.md)")
    q.add_argument("--out", required=True, help="where bundles are written, one directory per gateway")
    centre_args(q)
    q.set_defaults(func=_friendly(_cmd_batch))

    q = psub.add_parser("worker", help="certificate for a centre worker (reads every gateway)",
                        description="Key and certificate for a centre process; the ACL lets it read and write "
                                    "everything under counterguard/v1/.")
    ca_arg(q)
    q.add_argument("--id", required=True, help="worker id (certificate CN, MQTT user)")
    q.add_argument("--out", required=True, help="where the worker's key and certificate are written")
    q.add_argument("--days", type=int, default=365, help="certificate lifetime in days (default 365)")
    q.set_defaults(func=_friendly(_cmd_worker))

    q = psub.add_parser("renew", help="re-issue certificates that expire soon (same key)",
                        description="Re-issue each certificate expiring within --within-days for the same key.")
    ca_arg(q)
    q.add_argument("certs", nargs="*", metavar="CERT", help="certificate files to renew")
    q.add_argument("--bundles", metavar="DIR", help="every OUT/*/gateway.crt under a bundles directory")
    q.add_argument("--within-days", type=int, default=30, help="renew what expires within this many days (default 30)")
    q.add_argument("--days", type=int, default=365, help="certificate lifetime in days (default 365)")
    q.add_argument("--force", action="store_true", help="renew even if not due")
    q.set_defaults(func=_friendly(_cmd_renew))

    q = psub.add_parser("revoke", help="revoke a gateway's or worker's certificate",
                        description="Revoke every live certificate of ID (or one serial) and rewrite crl.pem.")
    ca_arg(q)
    q.add_argument("id", metavar="ID", help="the gateway or worker id to revoke")
    q.set_defaults(func=_friendly(_cmd_revoke))

    q = psub.add_parser("broker-config", help="mosquitto config with client-certificate TLS, CRL and ACL",
                        description="Write mosquitto.conf, acl, ca.crt, crl.pem and a broker certificate to OUT.")
    ca_arg(q)
    q.add_argument("--out", required=True, help="where the mosquitto config, CRL and ACL are written")
    q.add_argument("--host", default="", help="listen address (default: all)")
    q.add_argument("--port", type=int, default=8883, help="TLS listener port (default 8883)")
    q.add_argument("--hostname", action="append", help="broker name in its certificate (repeat)")
    q.add_argument("--user", default=None,
                   help="user mosquitto drops to when started as root; it may read the broker key "
                        "(default: mosquitto when run as root)")
    q.add_argument("--message-size-limit", type=int, metavar="BYTES",
                   help="largest message the broker passes on (default 1 MiB; a signed model manifest is "
                        "about twice its .tflite file)")
    q.set_defaults(func=_friendly(_cmd_broker_config))

    p = sub.add_parser("doctor", help="check this gateway and say what to fix",
                       description="Check the config, serial ports, pins, clock sync, certificates, broker "
                                   "reachability, keys and disk space; one line per check, each failure says "
                                   "what to fix. Exit 1 if anything failed.")
    p.add_argument("-c", "--config", default="/etc/counterguard/config.toml", help="gateway TOML file (default /etc/counterguard/config.toml)")
    p.set_defaults(func=_friendly(_cmd_doctor))


def _errors():
    from counterguard.core.manifest import ManifestError
    from counterguard.provisioning.ca import ProvisionError
    from counterguard.provisioning.install import BranchError

    return (ProvisionError, BranchError, ManifestError)


def _friendly(func):
    """A provisioning error is a message for the installer, not a traceback."""

    def run(args) -> int:
        try:
            return func(args)
        except _errors() as exc:
            print(f"counterguard: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:  # a directory that cannot be made or a file that cannot be read
            where = exc.filename or getattr(args, "out", None) or getattr(args, "dir", None) or ""
            print(f"counterguard {args.command}: {where}: {exc.strerror or exc}", file=sys.stderr)
            return 2

    return run
