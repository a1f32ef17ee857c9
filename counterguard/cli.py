"""The ``counterguard`` command."""

from __future__ import annotations

import argparse
import logging
import sys

from counterguard import __version__


def _demo(args) -> int:
    import signal
    import threading

    from counterguard.demo import run_demo

    stop = threading.Event()
    if args.keep:  # Ctrl-C or SIGTERM ends the kept demo cleanly: everything stopped, the folder removed
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    return run_demo(sys.stdout, pace=args.pace, keep=args.keep, stop=stop, sector=args.sector)


def _run(args) -> int:
    from counterguard.gateway.ops.app import serve

    return serve(args.config, lamp_stream=sys.stdout)


def _check_config(args) -> int:
    from counterguard.gateway.config import ConfigErrors, load_config
    from counterguard.gateway.ops.app import check_ready

    # Every problem in one run, one "FILE: key: problem" line each; an unreadable file or bad TOML
    # is a single ConfigError and goes to main's handler.
    problems = []
    try:
        config = load_config(args.config, collect=True)
    except ConfigErrors as exc:
        problems, config = exc.errors, exc.config
    try:
        check_ready(config)
    except ConfigErrors as exc:
        problems += exc.errors
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{args.config}: {len(problems)} problem(s)", file=sys.stderr)
        return 2
    print(f"{args.config}: ok ({len(config.serial)} counter line(s), broker {config.mqtt.host}:{config.mqtt.port})")
    return 0


def _replay(args) -> int:
    from counterguard.core.decision import Thresholds
    from counterguard.gateway.counter.replay import main_stdio

    thresholds = Thresholds(args.amber, args.red) if args.amber is not None and args.red is not None else None
    if (args.amber is None) != (args.red is None):
        print("counterguard replay: give both --amber and --red, or neither", file=sys.stderr)
        return 2
    return main_stdio(args.events, watchlist_file=args.watchlist, model_path=args.model, thresholds=thresholds,
                      lists_dir=args.lists, answers_file=args.answers)


def _receiver(args) -> int:
    import socket

    from counterguard.centre.receiver import main

    try:  # say plainly what an operator most often forgot, before the client's own error
        socket.create_connection((args.host, args.port), timeout=5).close()
    except OSError:
        print(f"counterguard receiver: cannot reach the broker: is mosquitto running on {args.host}:{args.port}?",
              file=sys.stderr)
        return 1
    return main(["--host", args.host, "--port", str(args.port)])


# Commands owned by other parts of the project (hardware self-test, firmware flashing, the centre,
# provisioning, the supervisor's tools). Each module offers add_commands(subparsers).
_COMMAND_MODULES = (
    "counterguard.gateway.ops.selftest",
    "counterguard.gateway.branch.supervisor_cli",
    "counterguard.gateway.branch.export",
    "counterguard.provisioning.flash",
    "counterguard.provisioning.cli",
    "counterguard.centre.cli",
    "counterguard.models.cli",
)


def _add_module_commands(sub) -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="counterguard",
        description="Edge fraud-alert gateway: teller events over serial, verdicts, counter lamps, MQTT to the centre.",
    )
    parser.add_argument("--version", action="version", version=f"counterguard {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="play a scripted branch morning end to end on this machine",
                       description="Start a private mosquitto, the gateway on a pty with mock pins, a simulated "
                                   "teller terminal and a stand-in centre; print lamps, verdicts and a summary.")
    p.add_argument("--pace", type=float, default=0.25, help="seconds between events (default 0.25)")
    p.add_argument("--sector", choices=("bank", "carrier"), default="bank",
                   help="bank: a branch morning (the default); carrier: a morning at a carrier's outlet, SIM cards")
    p.add_argument("--keep", action="store_true",
                   help="afterwards, keep the branch console and a real centre dashboard running with the "
                        "morning's alerts (URLs and a one-time login printed) until Ctrl-C")
    p.set_defaults(func=_demo)

    p = sub.add_parser("run", help="run the gateway service", description="Run the gateway until SIGTERM or Ctrl-C.")
    p.add_argument("-c", "--config", help="gateway TOML file (docs/configuration.md); default: embedded defaults")
    p.set_defaults(func=_run)

    p = sub.add_parser("check-config", help="validate a gateway config file and exit",
                       description="Validate a config file; an error names the file and the key.")
    p.add_argument("config", help="gateway TOML file")
    p.set_defaults(func=_check_config)

    p = sub.add_parser("replay", help="score a file of events as the gateway would, one verdict line each",
                       description="Run EVENTS.jsonl (one event per line, '-' for stdin) in order through the "
                                   "gateway's own stages; write verdict lines to stdout, bad lines to stderr "
                                   "with their line number; exit 1 if any line was bad.")
    p.add_argument("events", metavar="EVENTS.jsonl", help="events, one JSON object per line ('-' reads stdin)")
    p.add_argument("--watchlist", metavar="FILE", help="stop-payment list: one account per line, # comments")
    p.add_argument("--lists", metavar="DIR", help="lists of persons: DIR/warned.csv and DIR/restricted.csv, one "
                   "VALUE[,TYPE[,LABEL[,FROM[,UNTIL]]]] per line (as 'centre push-list --file')")
    p.add_argument("--answers", metavar="FILE", help="the customers' answers, one {\"event_id\", \"answers\"} per "
                   "line: each output line then adds the final verdict after them")
    p.add_argument("--model", metavar="FILE.tflite", help="model to try (default: the bundled model)")
    p.add_argument("--amber", type=float, help="amber threshold to try (with --red)")
    p.add_argument("--red", type=float, help="red threshold to try (with --amber)")
    p.set_defaults(func=_replay)

    p = sub.add_parser("receiver", help="a minimal centre: print and receipt alerts from gateways",
                       description="Subscribe to every gateway's alerts and acknowledgements, print them and "
                                   "send receipts.")
    p.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    p.set_defaults(func=_receiver)

    _add_module_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from counterguard.gateway.config import ConfigError

    try:
        return args.func(args)
    except ConfigError as exc:
        for line in str(exc).splitlines():  # ConfigErrors holds several, one line each
            print(f"counterguard: configuration error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # last resort: a file or device no command expected to fail on
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"counterguard {args.command}: {where}{exc.strerror or exc}", file=sys.stderr)
        missing = isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError))
        return 2 if missing else 1


if __name__ == "__main__":
    sys.exit(main())
