"""The caring dialogue in the scoring path: what the customer answered, as signals the gateway scores.

After an amber or red verdict the teller asks the caring questions. The answers that separate a
coached victim from an honest customer in a hurry come down to six signals; a terminal (an ``ANS``
frame, docs/protocol.md) or the branch console sends them for the event, and the gateway answers
with the final verdict (core/decision.py ``after_answers``).

    parse_answers({"event_id": "b17-c3-000042",
                   "answers": {"told_to_by_caller": "yes", "knows_payee_in_person": "no"}})
    # -> ("b17-c3-000042", {"told_to_by_caller": "yes", "knows_payee_in_person": "no"})

Each answer is ``yes``, ``no`` or ``declined`` (would not say); a signal not asked is left out.
"""

from __future__ import annotations

from counterguard.core.events import SchemaError, _printable

# In the order a teller asks them. For all but knows_payee_in_person, "yes" is the sign of a scam.
SIGNALS = (
    "told_to_by_caller",  # someone on the phone or online told them to do this
    "knows_payee_in_person",  # they have met the person they are paying
    "promised_returns",  # they were promised a profit, a refund or a prize
    "told_account_in_crime",  # they were told their account is part of a crime case
    "told_to_keep_secret",  # they were told not to tell the bank, family or police
    "buying_for_someone",  # they are doing this for someone else
)
ANSWERS = ("yes", "no", "declined")
# Each signal as a teller asks it, for the outcome record and the console (caring_questions.toml
# maps its questions to these signals).
SIGNAL_TEXT = {
    "told_to_by_caller": {"en": "Did someone on the phone or online tell you to do this?",
                          "zh": "是否有人通过电话或网络让您办理这笔业务？"},
    "knows_payee_in_person": {"en": "Have you met the person you are paying?", "zh": "您见过收款人本人吗？"},
    "promised_returns": {"en": "Were you promised a profit, a refund or a prize?", "zh": "对方是否承诺高额回报、退款或奖品？"},
    "told_account_in_crime": {"en": "Were you told your account is part of a crime case?",
                              "zh": "是否有人说您的账户涉嫌犯罪案件？"},
    "told_to_keep_secret": {"en": "Were you told not to tell the bank, your family or the police?",
                            "zh": "对方是否让您不要告诉银行、家人或警察？"},
    "buying_for_someone": {"en": "Are you doing this for someone else?", "zh": "您是在替别人办理吗？"},
}
# Answers that are a scam's own script: any one of them makes the final verdict red.
SCRIPTED = ("told_to_by_caller", "promised_returns", "told_account_in_crime", "told_to_keep_secret")


def parse_answers(body) -> tuple[str, dict]:
    """(event_id, {signal: answer}) of an answers payload; SchemaError naming the field at fault."""
    if not isinstance(body, dict):
        raise SchemaError("answers", "must be a JSON object")
    unknown = set(body) - {"event_id", "answers", "by"}
    if unknown:
        raise SchemaError(sorted(unknown)[0], "is not a field of an answers payload (event_id, answers, by)")
    event_id = body.get("event_id")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 64:
        raise SchemaError("event_id", "must be a string of 1 to 64 characters")
    _printable("event_id", event_id)
    answers = body.get("answers")
    if not isinstance(answers, dict) or not answers:
        raise SchemaError("answers", f"must be an object of one or more signals ({', '.join(SIGNALS)})")
    for signal, answer in answers.items():
        if signal not in SIGNALS:
            raise SchemaError("answers", f"unknown signal {signal[:40]!r}; expected any of {', '.join(SIGNALS)}")
        if answer not in ANSWERS:
            raise SchemaError("answers", f"{signal} must be yes, no or declined")
    by = body.get("by")
    if by is not None and (not isinstance(by, str) or not 1 <= len(by) <= 32):
        raise SchemaError("by", "must be the teller's staff number, 1 to 32 characters")
    return event_id, {s: answers[s] for s in SIGNALS if s in answers}


def said_scam_script(answers: dict) -> bool:
    """Whether the customer said "yes" to any part of a scam's own script (``SCRIPTED``)."""
    return any(answers.get(s) == "yes" for s in SCRIPTED)


def warning_signs(answers: dict) -> list[str]:
    """The answers that point to a scam, as reason codes, in asking order."""
    signs = [s for s in SCRIPTED if answers.get(s) == "yes"]
    if answers.get("buying_for_someone") == "yes":
        signs.append("buying_for_someone")
    if answers.get("knows_payee_in_person") == "no":
        signs.append("payee_not_known_in_person")
    if sum(a == "declined" for a in answers.values()) >= 2:
        signs.append("declined_to_answer")
    return [REASON_OF.get(s, s) for s in signs]


# Reason codes of the answers (core/decision.py REASON_TEXT has their words).
REASON_OF = {"told_to_by_caller": "caller_instructed"}
