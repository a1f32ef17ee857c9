"""The supervisor's commands: ``counterguard alerts``, ``raise``, ``ack``, ``outcome``, ``report``
and ``console-password``. They work on the gateway's store file (from ``--config``), alongside a
running gateway: its lamps and uplink pick up what is written here within a second.
"""

from __future__ import annotations

import sys
from datetime import date, datetime

from counterguard.core import messages
from counterguard.gateway.store.db import OUTCOMES, RAISE_NOTE_MAX


def _config(args):
    from counterguard.gateway.config import Config, load_config

    return load_config(args.config) if args.config else Config()


def _not_on_roster(config, by: str, command: str) -> bool:
    """True (having said why) when the branch keeps a roster and ``--by`` is not on it: an alert's
    trail must name someone who works here, as the console's login does."""
    roster = config.console.staff
    if not roster or by in roster:
        return False
    print(f"counterguard {command}: --by {by!r} is not a staff number on this branch's roster "
          f"(console.staff in {config.source or 'the config'}); give your own staff number", file=sys.stderr)
    return True


def _open_store(config):
    from counterguard.gateway.config import ConfigError
    from counterguard.gateway.store.db import Store

    path = config.store_path
    if not path.exists():
        raise ConfigError(config.source, "store.path", f"no gateway store at {path}; give the gateway's --config")
    return Store(path)


def _alerts(args) -> int:
    from counterguard.gateway.questions import load_questions

    config = _config(args)
    q = load_questions(config.supervisor.questions_file or None)
    if args.questions:
        return _questions(config, q, args.questions)
    states = ("open", "acknowledged", "closed") if args.all else ("open", "acknowledged")
    with _open_store(config) as store:
        views = store.alert_views(states=states)
    if not views:
        print("no alerts" if args.all else "no open alerts and no outcomes owed")
        return 0
    for v in views:
        when = datetime.fromtimestamp(v.raised_wall).strftime("%Y-%m-%d %H:%M:%S")
        extra = f"  by {v.ack_by} via {v.ack_via}" if v.ack_by else ""
        extra += f"  outcome {v.outcome}" if v.outcome else ""
        extra += f" at level {v.handled_at} ({messages.HANDLED_AT[v.handled_at]})" if v.handled_at else ""
        # An alert staff raised themselves says so first: the model did not find this one.
        staff = f"  RAISED BY STAFF {v.raised_by}" + (f" ({v.raise_note})" if v.raise_note else "") \
            if v.raised_by else ""
        print(f"{v.alert_id}  {when}  counter {v.counter}  {v.level:<5}  {v.state:<12}{staff}{extra}  "
              f"{', '.join(q.label(r) for r in v.reasons)}")
    return 0


def _questions(config, q, alert_id: str) -> int:
    """The caring questions of one alert with their keys (for ``outcome --answer KEY=ANSWER``), and
    the answers already recorded."""
    with _open_store(config) as store:
        alert = store.alert(alert_id)
        recorded = {a.key: a for a in store.answers([alert_id]).get(alert_id, [])}
    if alert is None:
        print(f"counterguard alerts: no alert {alert_id!r} on this gateway; list them with 'counterguard alerts'",
              file=sys.stderr)
        return 1
    print(f"caring questions of alert {alert_id} (counter {alert.counter}, {alert.level}: "
          f"{', '.join(q.label(r) for r in alert.reasons)})")
    # A closed alert shows the questions as they were asked, even if the file changed since.
    asked = [(a.key, a.question_en, a.question_zh) for a in recorded.values()] if recorded else \
        [(x.key, x.en, x.zh) for x in q.asked(alert.reasons)]
    for key, en, zh in asked:
        answer = f"  answered: {recorded[key].answer}" if key in recorded else ""
        print(f"  {key:<22} {en}{answer}")
        if zh:
            print(f"  {'':<22} {zh}")
    if not recorded:
        print(f"record answers with: counterguard outcome {alert_id} OUTCOME --by STAFF "
              f"--answer {asked[0][0] if asked else 'KEY'}=yes|no|declined ...")
    return 0


def _answers(values) -> dict:
    """``KEY=ANSWER`` options as a dict; ValueError naming a malformed or repeated one."""
    out: dict = {}
    for text in values or ():
        key, sep, answer = text.partition("=")
        key, answer = key.strip(), answer.strip()
        if not sep or not key or not answer:
            raise ValueError(f"--answer {text!r} must be KEY=ANSWER, e.g. general.1=yes")
        if key in out:
            raise ValueError(f"--answer {key} is given twice")
        out[key] = answer
    return out


def _raise(args) -> int:
    from counterguard.core.clock import Clock
    from counterguard.gateway.store.db import LifecycleError, UnknownEvent

    config = _config(args)
    if _not_on_roster(config, args.by, "raise"):
        return 2
    with _open_store(config) as store:
        try:
            alert = store.raise_alert(args.event_id, args.level, args.by, "cli", args.note, stamp=Clock().now(),
                                      gateway_id=config.gateway.id)
        except (UnknownEvent, LifecycleError, ValueError) as exc:
            print(f"counterguard raise: {exc}", file=sys.stderr)
            return 1
    print(f"raised {alert.level} alert {alert.alert_id} on event {alert.event_id} (counter {alert.counter}) "
          f"by {args.by}; the gateway's lamps follow within a second")
    return 0


def _ack(args) -> int:
    from counterguard.core.clock import Clock
    from counterguard.gateway.store.db import UnknownAlert

    config = _config(args)
    if _not_on_roster(config, args.by, "ack"):
        return 2
    with _open_store(config) as store:
        try:
            ack = store.acknowledge(args.alert_id, counter=args.counter, by=args.by, via="cli", stamp=Clock().now(),
                                    gateway_id=config.gateway.id)
        except (UnknownAlert, ValueError) as exc:
            print(f"counterguard ack: {exc}", file=sys.stderr)
            return 1
    if ack is None:
        what = f"alert {args.alert_id} is not open (already acknowledged?)" if args.alert_id else "no open red alert"
        print(f"counterguard ack: {what}; see 'counterguard alerts'", file=sys.stderr)
        return 1
    print(f"acknowledged {ack.alert_id} (counter {ack.counter}, {ack.level}) by {ack.by}; "
          f"record its outcome with 'counterguard outcome {ack.alert_id} OUTCOME --by {ack.by}'")
    return 0


def _outcome(args) -> int:
    from counterguard.core.clock import Clock
    from counterguard.gateway.questions import load_questions
    from counterguard.gateway.store.db import LifecycleError, UnknownAlert

    config = _config(args)
    if _not_on_roster(config, args.by, "outcome"):
        return 2
    try:
        answers = _answers(args.answer)
    except ValueError as exc:
        print(f"counterguard outcome: {exc}", file=sys.stderr)
        return 2
    try:
        level = messages.handled_at_level(args.level)
    except ValueError:
        print(f"counterguard outcome: --level (handled_at) must be 1 or teller, 2 or supervisor, 3 or police; "
              f"got {args.level!r}", file=sys.stderr)
        return 2
    questions = load_questions(config.supervisor.questions_file or None) if answers else None
    with _open_store(config) as store:
        view = store.alert_view(args.alert_id)
        if level is None and view is not None and messages.implied_level(
                args.outcome, answered_at_counter=store.dialogue(view.event_id) is not None) is None:
            # As the console's form: the centre counts each level's alerts, so nobody's level is guessed.
            print("counterguard outcome: say which level handled it: --level 1 (teller), 2 (supervisor) or "
                  "3 (police); nothing was recorded", file=sys.stderr)
            return 2
        try:
            rec = store.record_outcome(args.alert_id, args.outcome, note=args.note, by=args.by, via="cli",
                                       stamp=Clock().now(), gateway_id=config.gateway.id, answers=answers,
                                       questions=questions, handled_at=level)
        except (UnknownAlert, LifecycleError, ValueError) as exc:
            print(f"counterguard outcome: {exc}", file=sys.stderr)
            return 1
    said = f"; {len(answers)} answer(s) recorded" if answers else ""
    print(f"alert {rec.alert_id} closed: {rec.outcome} (by {rec.by}), level {rec.handled_at} "
          f"({messages.HANDLED_AT[rec.handled_at]}){said}")
    return 0


def _report(args) -> int:
    from counterguard.gateway.branch.report import (
        ReportError,
        build_report,
        render_html,
        render_text,
        write_pdf,
    )

    try:
        day = date.today() if args.day == "today" else date.fromisoformat(args.day)
    except ValueError:
        print(f"counterguard report: --day must be YYYY-MM-DD or 'today', got {args.day!r}", file=sys.stderr)
        return 2
    config = _config(args)
    with _open_store(config) as store:
        report = build_report(store, day, branch=config.gateway.branch, gateway_id=config.gateway.id)
    sys.stdout.write(render_text(report))
    if args.html:
        try:
            with open(args.html, "w", encoding="utf-8") as out:
                out.write(render_html(report))
        except OSError as exc:
            print(f"counterguard report: cannot write {args.html}: {exc.strerror}", file=sys.stderr)
            return 1
        print(f"HTML report written to {args.html}")
    if args.pdf:
        try:
            write_pdf(render_html(report), args.pdf)
        except (ReportError, OSError) as exc:
            print(f"counterguard report: {exc}", file=sys.stderr)
            return 1
        print(f"PDF report written to {args.pdf}")
    return 0


def _console_password(args) -> int:
    from counterguard.core.weblogin import PasswordError, hash_password, read_new_password

    try:
        print(hash_password(read_new_password("branch console password: ")))
    except PasswordError as exc:
        print(f"counterguard console-password: {exc}", file=sys.stderr)
        return 1
    return 0


def add_commands(sub) -> None:
    config_help = "gateway TOML file (default: embedded defaults)"

    p = sub.add_parser("alerts", help="list open alerts and alerts still owed an outcome",
                       description="List alerts that are open or acknowledged without an outcome (all with --all).")
    p.add_argument("-c", "--config", help=config_help)
    p.add_argument("--all", action="store_true", help="closed alerts too")
    p.add_argument("--questions", metavar="ALERT_ID",
                   help="the caring questions of this alert with their keys (for 'outcome --answer'), and any "
                        "answers recorded")
    p.set_defaults(func=_alerts)

    p = sub.add_parser("raise", help="raise an alert on an event the gateway let through (a teller's report)",
                       description="Raise an alert on EVENT_ID, an event this gateway received in the last 24 hours "
                                   "and answered green (or amber, for a red hold): lamps, supervisor, escalation "
                                   "and the centre treat it like the model's alerts, with reason teller_report.")
    p.add_argument("event_id", metavar="EVENT_ID", help="the event's id, as the teller terminal sent it")
    p.add_argument("--by", required=True, help="your staff number (on the roster, console.staff, if the branch keeps one)")
    p.add_argument("--level", choices=("red", "amber"), default="red",
                   help="red: hold and call the supervisor (default); amber: ask the caring questions")
    p.add_argument("--note", default="", help=f"what you noticed, in a sentence (at most {RAISE_NOTE_MAX} characters)")
    p.add_argument("-c", "--config", help=config_help)
    p.set_defaults(func=_raise)

    p = sub.add_parser("ack", help="acknowledge an alert from the command line",
                       description="Acknowledge ALERT_ID, or else the oldest open red alert (of --counter). "
                                   "The running gateway's lamps follow within a second.")
    p.add_argument("alert_id", nargs="?", metavar="ALERT_ID", help="alert id from 'counterguard alerts'")
    p.add_argument("--by", required=True, help="your staff number (on the roster, console.staff, if the branch keeps one)")
    p.add_argument("--counter", type=int, help="the oldest open red alert at this counter")
    p.add_argument("-c", "--config", help=config_help)
    p.set_defaults(func=_ack)

    p = sub.add_parser("outcome", help="record what happened with an acknowledged alert, and close it",
                       description="Record the outcome of ALERT_ID: " + ", ".join(OUTCOMES) + ", with the "
                                   "customer's answers to the caring questions asked (--answer).")
    p.add_argument("alert_id", metavar="ALERT_ID", help="alert id from 'counterguard alerts'")
    p.add_argument("outcome", choices=OUTCOMES, metavar="OUTCOME", help=" | ".join(OUTCOMES))
    p.add_argument("--by", required=True, help="your staff number (on the roster, console.staff, if the branch keeps one)")
    p.add_argument("--note", default="", help="what happened, in a sentence or two")
    p.add_argument("--answer", action="append", metavar="KEY=ANSWER",
                   help="the customer's answer to a caring question: yes, no or declined (repeat for each question "
                        "asked; keys from 'counterguard alerts --questions ALERT_ID')")
    p.add_argument("--level", metavar="LEVEL",
                   help="who handled it: 1 or teller (caring dialogue at the counter), 2 or supervisor (the "
                        "supervisor's talk), 3 or police (police called); required unless implied: police_called is "
                        "always 3, and an alert whose customer answered the caring questions at the counter is 1")
    p.add_argument("-c", "--config", help=config_help)
    p.set_defaults(func=_outcome)

    p = sub.add_parser("report", help="the day's verdicts, alerts, response times and outcomes",
                       description="Print a branch day's shift report; --html also writes it as a page with a chart, "
                                   "--pdf prints that page to PDF with headless Chromium.")
    p.add_argument("--day", required=True, metavar="DATE", help="YYYY-MM-DD (local time) or 'today'")
    p.add_argument("-c", "--config", help=config_help)
    p.add_argument("--html", metavar="OUT", help="also write the report as HTML to this file")
    p.add_argument("--pdf", metavar="OUT", help="also print the report to PDF (needs Chromium)")
    p.set_defaults(func=_report)

    p = sub.add_parser("console-password", help="hash a branch console password for the config",
                       description="Read a password (prompted, or one line on stdin) and print the hash for "
                                   "console.password_hash.")
    p.set_defaults(func=_console_password)
