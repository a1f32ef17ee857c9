"""A user's mistake on the command line is one clear line, never a traceback: a missing file or store
names the path and exits non-zero, a reader never makes an empty database out of a typo, check-config
lists every problem at once, and every option says what it is for. The last tests walk the parser, so
a command added later is held to the same without being listed."""

import argparse
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from counterguard.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent


def _commands(tmp: Path, keys: Path) -> list[tuple[list[str], str]]:
    """(argv, the path the error must name) for every command that takes a file, a directory or a store."""
    m = tmp / "missing"
    gw = tmp / "gateway.toml"  # a readable config whose store is not there
    keyfiles = ["--centre-public-key", str(keys / "centre-public.pem"), "--watchlist-key", str(keys / "watchlist.key")]
    sign = ["--signing-key", str(keys / "centre-signing.pem"), "--store", str(tmp / "pushes.db"), "--create",
            "--port", "1", "--target", "all"]
    return [
        (["run", "-c", f"{m}.toml"], f"{m}.toml"),
        (["check-config", f"{m}.toml"], f"{m}.toml"),
        (["check-config", str(tmp)], str(tmp)),
        (["replay", f"{m}.jsonl"], f"{m}.jsonl"),
        (["replay", str(tmp)], str(tmp)),
        (["replay", "/dev/null", "--watchlist", f"{m}.txt"], f"{m}.txt"),
        (["replay", "/dev/null", "--model", f"{m}.tflite"], f"{m}.tflite"),
        (["selftest", "--mock", "-c", f"{m}.toml"], f"{m}.toml"),
        (["selftest", "--mock", "--pinmap", f"{m}.toml"], f"{m}.toml"),
        (["wiring", "--pinmap", f"{m}.toml"], f"{m}.toml"),
        (["alerts", "-c", f"{m}.toml"], f"{m}.toml"),
        (["alerts", "-c", str(gw)], f"{m}.db"),
        (["raise", "E-1", "--by", "S1024", "-c", str(gw)], f"{m}.db"),
        (["ack", "A-1", "--by", "S1024", "-c", str(gw)], f"{m}.db"),
        (["outcome", "A-1", "false_alarm", "--by", "S1024", "-c", str(gw)], f"{m}.db"),
        (["report", "--day", "today", "-c", str(gw)], f"{m}.db"),
        (["export-events", "--day", "2026-01-05", "-c", str(gw)], f"{m}.db"),
        (["export-events", "--day", "2026-01-05", "-c", f"{m}.toml"], f"{m}.toml"),
        (["provision", "gateway", "--ca", f"{m}-ca", "--id", "gw-1", "--region", "r1", "--branch", "b1",
          "--out", str(tmp / "bundles"), *keyfiles], f"{m}-ca"),
        (["provision", "batch", "--ca", f"{m}-ca", "--csv", f"{m}.csv", "--out", str(tmp / "bundles"), *keyfiles],
         f"{m}-ca"),
        (["provision", "worker", "--ca", f"{m}-ca", "--id", "w1", "--out", str(tmp / "worker")], f"{m}-ca"),
        (["provision", "renew", "--ca", f"{m}-ca", f"{m}.crt"], f"{m}-ca"),
        (["provision", "revoke", "--ca", f"{m}-ca", "gw-1"], f"{m}-ca"),
        (["provision", "broker-config", "--ca", f"{m}-ca", "--out", str(tmp / "broker")], f"{m}-ca"),
        (["provision", "ca", "--dir", str(gw / "ca")], str(gw / "ca")),  # under a file: cannot be made
        (["centre", "run", "-c", f"{m}.toml"], f"{m}.toml"),
        (["centre", "fleet", "-c", f"{m}.toml"], f"{m}.toml"),
        (["centre", "fleet", "--store", f"{m}.db"], f"{m}.db"),
        (["centre", "accuracy", "--store", f"{m}.db"], f"{m}.db"),
        (["centre", "quarantine", "--store", f"{m}.db"], f"{m}.db"),
        (["centre", "rollout", "--store", f"{m}.db"], f"{m}.db"),
        (["centre", "push-model", f"{m}.tflite", *sign], f"{m}.tflite"),
        (["centre", "push-watchlist", "--file", f"{m}.txt", "--watchlist-key", str(keys / "watchlist.key"), *sign],
         f"{m}.txt"),
        (["centre", "push-thresholds", "--amber", "0.3", "--red", "0.8", "--signing-key", f"{m}.pem",
          "--store", str(tmp / "pushes.db"), "--create", "--target", "all"], f"{m}.pem"),
        # A push reads the versions already sent: a mistyped store is refused, not started afresh.
        (["centre", "push-thresholds", "--amber", "0.3", "--red", "0.8", "--target", "all",
          "--signing-key", str(keys / "centre-signing.pem"), "--store", f"{m}.db"], f"{m}.db"),
        (["centre", "promote", "--all", "--store", f"{m}.db"], f"{m}.db"),
        (["centre", "rollback", "--store", f"{m}.db"], f"{m}.db"),
        (["evaluate", "--cases", f"{m}.jsonl"], f"{m}.jsonl"),
        (["evaluate", "--model", f"{m}.tflite"], f"{m}.tflite"),
        # Not text at all: a file picked by mistake.
        (["check-config", str(tmp / "photo.jpg")], str(tmp / "photo.jpg")),
        (["replay", str(tmp / "photo.jpg")], str(tmp / "photo.jpg")),
        (["evaluate", "--cases", str(tmp / "photo.jpg")], str(tmp / "photo.jpg")),
    ]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    out = tmp_path_factory.mktemp("keys")
    assert main(["centre", "keys", str(out)]) == 0
    return out


def test_every_command_names_a_missing_path_in_one_line_and_fails(tmp_path, keys, capsys):
    (tmp_path / "gateway.toml").write_text(f'[store]\npath = "{tmp_path}/missing.db"\n')
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    capsys.readouterr()
    for argv, path in _commands(tmp_path, keys):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own refusals
            code = exc.code
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"counterguard {' '.join(argv)} raised {type(exc).__name__}: {exc}")
        out, err = capsys.readouterr()
        where = f"counterguard {' '.join(argv)}"
        assert code not in (0, None), f"{where} exited 0"
        assert "Traceback" not in err, where
        assert path in err, f"{where} did not name {path}: {err!r}"
    # A reader command never leaves a database behind for a mistyped store.
    assert not (tmp_path / "missing.db").exists()


def test_the_installed_command_says_the_same_without_a_traceback(tmp_path):
    def run(*argv):
        return subprocess.run([sys.executable, "-m", "counterguard", *argv], capture_output=True, text=True,
                              timeout=60)

    done = run("replay", str(tmp_path / "events.jsonl"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"counterguard replay: {tmp_path / 'events.jsonl'}: no such events file"
    typo = tmp_path / "centr.db"
    done = run("centre", "fleet", "--store", str(typo))
    assert done.returncode == 2 and "Traceback" not in done.stderr and str(typo) in done.stderr
    assert not typo.exists()


def test_check_config_lists_every_problem_in_one_run(tmp_path, capsys):
    path = tmp_path / "branch.toml"
    path.write_text('[gateway]\nid = "bad id!"\ncolour = "blue"\n[mqtt]\nport = 99999\nkeepalive = "x"\n'
                    '[lamps]\npins = "maybe"\n[model]\npath = "/nonexistent/model.tflite"\n[bogus]\n')
    assert main(["check-config", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    for key in ("bogus", "gateway.colour", "gateway.id", "mqtt.port", "mqtt.keepalive", "lamps.pins", "model.path"):
        assert any(line.startswith(f"{path}: {key}: ") for line in lines), (key, lines)
    assert lines[-1] == f"{path}: 7 problem(s)"
    # The running gateway still stops at the first, in the same words.
    from counterguard.gateway.config import ConfigError, load_config

    with pytest.raises(ConfigError) as first:
        load_config(path)
    assert "\n" not in str(first.value) and str(first.value) in lines


def test_an_unreachable_broker_is_one_line_with_the_likely_cause(tmp_path, keys, capsys):
    assert main(["receiver", "--port", "1"]) == 1
    assert capsys.readouterr().err.strip() == ("counterguard receiver: cannot reach the broker: "
                                               "is mosquitto running on 127.0.0.1:1?")
    assert main(["centre", "push-thresholds", "--amber", "0.3", "--red", "0.8", "--target", "all", "--create",
                 "--signing-key", str(keys / "centre-signing.pem"), "--port", "1",
                 "--store", str(tmp_path / "c.db")]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the broker at 127.0.0.1:1" in err and "is mosquitto running on 127.0.0.1:1?" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    # The centre service in its own process (it installs signal handlers): its log lines, then the one error.
    done = subprocess.run([sys.executable, "-m", "counterguard", "centre", "run", "--no-dashboard", "--port", "1",
                           "--store", str(tmp_path / "c.db")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith("(is mosquitto running on 127.0.0.1:1?)"), done.stderr


def _options(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*prefix, name))
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield " ".join(prefix), action


def test_every_option_says_what_it_is_for():
    missing = [f"{cmd} {'/'.join(a.option_strings) or a.dest}" for cmd, a in _options(build_parser())
               if not a.help or a.help == argparse.SUPPRESS]
    assert not missing, f"options without help: {missing}"


# --- every command, found by walking the parser ---------------------------------------------------
# A subcommand added later is covered here without anyone listing it.

def _leaves(parser, prefix=()):
    """(command words, parser) for every runnable command."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
    for sub in subs:
        for name, child in sub.choices.items():
            yield from _leaves(child, (*prefix, name))


_PATH_METAVAR = re.compile(r"FILE|DIR|PEM|CERT|PATH|\.[A-Za-z]+$")
_PATH_HELP = re.compile(r"\b(file|files|directory|folder|path|TOML|PEM|SQLite)\b", re.I)
# Plain values for what is not a path, so that each command gets as far as its files.
_VALUES = {"by": "S1024", "day": "2026-01-05", "amber": "0.3", "red": "0.8", "target": "all", "counter": "1",
           "id": "gw-1", "region": "r1", "branch": "b1", "event_id": "E-1", "alert_id": "A-1"}
# What a command needs beyond argparse's required arguments (one of two flags) before it looks at files.
_NEEDS = {"centre promote": ["--all"], "centre push-list": ["--add", "13800138000"]}
# Commands whose job is to make their store: they are the service itself.
_MAKE_THEIR_STORE = {"centre run", "centre serve"}


def _takes_a_path(action) -> bool:
    if action.nargs == 0 or action.choices or action.type not in (None, str):
        return False
    return bool(_PATH_METAVAR.search(action.metavar or "") or _PATH_HELP.search(action.help or ""))


def _argv(words, parser, path_for) -> tuple[list[str], list[str]]:
    """The command with every required argument filled and every file argument (required or not) set
    to ``path_for(dest)``; and the paths given."""
    argv, paths = [*words, *_NEEDS.get(" ".join(words), [])], []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if _takes_a_path(action):
            value = path_for(action.dest)
            if value is None:
                continue
            paths.append(value)
        elif action.required:
            value = _VALUES.get(action.dest) or next(iter(action.choices or ()), None) or \
                ("1" if action.type in (int, float) else "x")
        else:
            continue
        argv += [action.option_strings[-1], value] if action.option_strings else [value]
    return argv, paths


def _run_in_process(argv, capsys) -> tuple[int, str, str]:
    """main(argv) under a time limit (a command that started real work instead of refusing would
    otherwise hang the suite); an exception escaping main is the traceback the user would have seen."""
    def too_long(*_):
        raise TimeoutError(f"counterguard {' '.join(argv)} ran on instead of refusing")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(30)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's refusals
        code = exc.code
    except Exception as exc:  # noqa: BLE001 - the point of the test
        pytest.fail(f"counterguard {' '.join(argv)} raised {type(exc).__name__}: {exc}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out, err = capsys.readouterr()
    return code, out, err


LEAVES = dict((" ".join(words), parser) for words, parser in _leaves(build_parser()))


def test_the_walk_finds_the_commands_of_every_part():
    # If the walk broke, the tests below would pass on nothing.
    for name in ("replay", "check-config", "centre fleet", "centre push-model", "provision gateway", "evaluate",
                 "firmware flash", "export-events"):
        assert name in LEAVES
    assert len(LEAVES) > 40


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_a_bad_flag_is_a_usage_error_not_a_traceback(name, capsys):
    argv, _ = _argv(name.split(), LEAVES[name], lambda dest: f"/nonexistent/{dest}")  # parsing stops first
    code, _, err = _run_in_process([*argv, "--no-such-flag"], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith("unrecognized arguments: --no-such-flag"), err


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_every_file_a_command_takes_is_missing_and_it_says_so_in_one_line(name, tmp_path, capsys):
    # A path under a plain file: it is not there and cannot be made, whether the command reads or writes it.
    plain = tmp_path / "plain-file"
    plain.write_text("not a directory\n")
    argv, paths = _argv(name.split(), LEAVES[name], lambda dest: str(plain / f"missing-{dest}"))
    if not paths:
        pytest.skip(f"{name} takes no file")
    code, out, err = _run_in_process(argv, capsys)
    where = f"counterguard {' '.join(argv)}"
    assert code not in (0, None), f"{where} exited 0"
    assert "Traceback" not in err, where
    assert len(err.strip().splitlines()) <= 1, f"{where}: more than one line: {err!r}"
    assert any(path in err or path in out for path in paths), f"{where} named none of its files: {out + err!r}"


@pytest.mark.parametrize("name", sorted(n for n, p in LEAVES.items()
                                        if "--store" in p._option_string_actions and n not in _MAKE_THEIR_STORE))
def test_a_mistyped_store_is_refused_and_never_created(name, tmp_path, capsys):
    typo = tmp_path / "centr.db"
    argv, _ = _argv(name.split(), LEAVES[name], lambda dest: str(typo) if dest == "store" else None)
    if "--store" not in argv:
        argv += ["--store", str(typo)]
    code, out, err = _run_in_process([*argv, "--port", "1"], capsys)
    assert code not in (0, None) and "Traceback" not in err, (argv, err)
    assert not typo.exists(), f"counterguard {' '.join(argv)} made an empty store"
