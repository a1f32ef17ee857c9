"""The customer's answers to the caring questions, as a terminal sends them (docs/firmware.md).

A terminal line whose object has an ``answers`` member is the customer's answers for an event that
already has its verdict; every other line is an event. The node checks an answers line as the
gateway checks an ``ANS`` payload (docs/protocol.md, "ANS payload"), so a mistyped signal is named
at the counter instead of coming back later as a NAK:

    {"event_id": "b17-c3-000042", "by": "T0031",
     "answers": {"told_to_by_caller": "yes", "knows_payee_in_person": "no"}}
"""

from . import wire

# The six signals, in the order a teller asks them; the same as the gateway's (a test compares them).
SIGNALS = (
    "told_to_by_caller",
    "knows_payee_in_person",
    "promised_returns",
    "told_account_in_crime",
    "told_to_keep_secret",
    "buying_for_someone",
)
ANSWERS = ("yes", "no", "declined")
FIELDS = ("event_id", "answers", "by")


def is_answers(body):
    """True if a terminal's JSON object is an answers line rather than an event."""
    return "answers" in body


def answers_problem(body):
    """``(field, detail)`` saying why an answers line must be refused, or None."""
    # Sorted, because MicroPython's dicts do not keep the line's order and the same line must
    # always get the same error.
    unknown = sorted(k for k in body if k not in FIELDS)
    if unknown:
        return unknown[0], ("%s is not a field of an answers line (event_id, answers, by); send the event "
                            "and its answers as separate lines" % unknown[0][:40])
    problem = wire.event_id_problem(body.get("event_id"))
    if problem:
        return "event_id", problem.replace("every event needs", "answers need")
    answers = body["answers"]
    if not isinstance(answers, dict) or not answers:
        return "answers", "answers must be an object of one or more signals (%s)" % ", ".join(SIGNALS)
    for signal in sorted(answers):
        if signal not in SIGNALS:
            return "answers", "unknown signal %r; expected any of %s" % (signal[:40], ", ".join(SIGNALS))
        if answers[signal] not in ANSWERS:
            return "answers", "%s must be yes, no or declined" % signal
    by = body.get("by")
    if by is not None and (not isinstance(by, str) or not 1 <= len(by) <= 32):
        return "by", "by must be the teller's staff number, 1 to 32 characters"
    return None
