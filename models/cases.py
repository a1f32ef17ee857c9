"""Labelled cases: a bank's own counter events with what they turned out to be.

The file ``counterguard export-events --labelled`` writes, after the bank has added the frauds it
learnt of later: one JSON object a line, ``{"event": <schema v1 event>, "label": 0|1}``, with
optional ``"watchlisted": bool``, ``"typology": str`` and ``"signals"`` (what the lists of persons
and the caring dialogue said: ``{"identity", "warned", "restricted", "payee_listed": bool,
"answers": {signal: yes|no|declined}}``, as models/simulate.py gives them) and ``"coached": true``
(a simulated victim coached to hide the signs); other keys are ignored. ``counterguard
evaluate --cases`` judges a model on such a file and ``python -m counterguard.models.train --cases`` trains on
it, both through ``load_cases`` here.
"""

from __future__ import annotations

import hashlib
import json

from counterguard.core import jsontext
from counterguard.core.dialogue import parse_answers
from counterguard.core.events import parse_event


class CasesError(ValueError):
    """A labelled-cases file cannot be used at all (unreadable, or no usable line)."""


def load_cases(path) -> tuple[list[dict], list[str]]:
    """(items in time order, problems) from a labelled-cases file, one JSON object a line:
    ``{"event": <schema v1 event>, "label": 0|1}`` with optional ``"watchlisted": bool`` and
    ``"typology": str`` (``counterguard export-events --labelled`` writes this, with more keys that
    are ignored here). Each bad line becomes one problem naming its line number; the rest are kept.
    """
    items, problems, seen = [], [], {}
    try:
        handle = open(path, encoding="utf-8")
    except OSError as e:
        raise CasesError(f"{path}: {e.strerror or e}") from e
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                case = jsontext.loads(line)
                if not isinstance(case, dict):
                    raise ValueError("must be a JSON object")
                if "event" not in case:
                    raise ValueError("event: is required")
                label = case.get("label")
                if isinstance(label, bool) or label not in (0, 1):
                    raise ValueError(f"label: must be 0 or 1, got {label!r}")
                watchlisted = case.get("watchlisted", False)
                if not isinstance(watchlisted, bool):
                    raise ValueError(f"watchlisted: must be true or false, got {watchlisted!r}")
                typology = case.get("typology", "")
                if not isinstance(typology, str):
                    raise ValueError(f"typology: must be a string, got {typology!r}")
                event = parse_event(case["event"])
                signals = _signals(case.get("signals"))
            except ValueError as e:  # JSONDecodeError, TooDeep and SchemaError are ValueErrors
                problems.append(f"line {number}: {e}")
                continue
            if event.event_id in seen:
                problems.append(f"line {number}: event {event.event_id} is already on line {seen[event.event_id]}")
                continue
            seen[event.event_id] = number
            item = {"event": case["event"], "label": label, "typology": typology, "watchlisted": watchlisted}
            if signals is not None:
                item["signals"] = signals
            if case.get("coached") is True:  # a simulated world's victim coached to hide the signs
                item["coached"] = True
            items.append((event.epoch, number, item))
    if not items:
        raise CasesError(f"{path}: no usable case" + (f" ({len(problems)} bad lines)" if problems else " (empty file)"))
    items.sort(key=lambda t: (t[0], t[1]))  # history is built in time order, whatever order the file is in
    return [item for _, _, item in items], problems


_FLAGS = ("identity", "warned", "restricted", "payee_listed")


def _signals(signals):
    """A case's ``signals``, checked (ValueError naming the key at fault), or None when it has none."""
    if signals is None:
        return None
    if not isinstance(signals, dict):
        raise ValueError("signals: must be a JSON object")
    unknown = set(signals) - set(_FLAGS) - {"answers"}
    if unknown:
        raise ValueError(f"signals: unknown key {sorted(unknown)[0]!r}; expected {', '.join(_FLAGS)}, answers")
    for key in _FLAGS:
        if not isinstance(signals.get(key, False), bool):
            raise ValueError(f"signals.{key}: must be true or false")
    answers = signals.get("answers") or {}
    if answers:
        _, answers = parse_answers({"event_id": "case", "answers": answers})
    return {**{key: signals.get(key, False) for key in _FLAGS}, "answers": answers}


def file_digest(path) -> str:
    """sha256 of a cases file, recorded in a model's manifest so its training data can be named."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_cases(items, path) -> None:
    """Write labelled items (``{"event", "label", "typology", "watchlisted"}``, as the generators give
    them) as a cases file, one line each."""
    with open(path, "w", encoding="utf-8") as handle:
        for item in items:
            case = {"event": item["event"], "label": int(item["label"]), "watchlisted": bool(item.get("watchlisted")),
                    "typology": item.get("typology", "")}
            if item.get("signals") is not None:
                case["signals"] = item["signals"]
            if item.get("coached"):
                case["coached"] = True
            handle.write(json.dumps(case, ensure_ascii=False) + "\n")
