"""Caring questions (关爱式提问) for the branch console: what to ask a customer, per verdict reason,
in Chinese and English, and each reason in plain words.

The bundled gateway/caring_questions.toml is the default; a branch can point
``supervisor.questions_file`` at its own file, and reasons that file leaves out keep the bundled
text. English reason labels come from counterguard.core.decision, so the console, the teller's ACK text and
the report say the same thing.

    >>> q = load_questions()
    >>> q.label("customer_on_phone", "zh"), q.label("customer_on_phone", "en")
    ('客户正在通话', 'customer on the phone')

Every question has a stable key ``<section>.<n>`` (``general.1``, ``large_cash.2``; n from 1 in
file order), so a customer's answers can be recorded against it with the text as it was asked:

    >>> [x.key for x in q.asked(["large_cash"])]
    ['general.1', 'general.2', 'large_cash.1']

The console puts a short list of them in front of staff, in reading order, and records answers
to that list only:

    >>> [x.key for x in q.shown(["customer_on_phone"], limit=3)]
    ['customer_on_phone.1', 'general.1', 'customer_on_phone.2']
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from counterguard.core.cards import CARD_SIGNS
from counterguard.core.decision import REASON_TEXT, REASONS
from counterguard.core.dialogue import SIGNALS
from counterguard.core.messages import ANSWERS  # noqa: F401  (what a customer said; a question not asked is not recorded)

LANGS = ("en", "zh")
DEFAULT_PATH = Path(__file__).with_name("caring_questions.toml")

# What a supervisor records when an alert is closed, in both languages.
OUTCOME_TEXT = {
    "confirmed_fraud": {"en": "Confirmed fraud", "zh": "确认诈骗"},
    "customer_dissuaded": {"en": "Customer dissuaded", "zh": "成功劝阻"},
    "false_alarm": {"en": "False alarm", "zh": "误报"},
    "police_called": {"en": "Police called", "zh": "已报警"},
    "card_sale_confirmed": {"en": "Card sale confirmed", "zh": "确认出售或出租卡"},
}
LEVEL_TEXT = {"green": {"en": "green", "zh": "绿"}, "amber": {"en": "amber", "zh": "黄"}, "red": {"en": "red", "zh": "红"}}


ANSWER_TEXT = {"yes": {"en": "yes", "zh": "是"}, "no": {"en": "no", "zh": "否"},
               "declined": {"en": "would not say", "zh": "不愿回答"}}


@dataclass(frozen=True)
class Question:
    """One caring question with its key, in both languages (either may be empty if a file gives
    only one), and the dialogue signal its answer gives (core/dialogue.py), if any."""
    key: str
    en: str
    zh: str
    signal: str = ""


class QuestionsError(ValueError):
    """A caring-questions file is unreadable or a key in it is wrong; the message names both."""

    def __init__(self, path, key: str | None, message: str):
        super().__init__(f"{path}: {key}: {message}" if key else f"{path}: {message}")
        self.path, self.key = str(path), key


@dataclass(frozen=True)
class CaringQuestions:
    labels_zh: dict = field(default_factory=dict)  # reason -> plain Chinese words
    questions: dict = field(default_factory=dict)  # reason -> {"en": [...], "zh": [...]}
    general: dict = field(default_factory=dict)    # {"en": [...], "zh": [...]}: asked for any alert
    # asked instead of ``general`` when the alert is about SIM cards or accounts (core/cards.py)
    general_cards: dict = field(default_factory=dict)

    def _general(self, reasons) -> tuple[str, dict]:
        """The general section for an alert with these reasons: the cards' own for a SIM card or an
        account opening (no money moves yet: "who asked you for this money?" makes no sense)."""
        if self.general_cards and any(r in CARD_SIGNS for r in reasons):
            return "general_cards", self.general_cards
        return "general", self.general

    def label(self, reason: str, lang: str = "en") -> str:
        if lang == "zh":
            return self.labels_zh.get(reason, REASON_TEXT.get(reason, reason))
        return REASON_TEXT.get(reason, reason)

    def for_reasons(self, reasons, lang: str = "en", limit: int | None = None) -> list[str]:
        """The questions to ask for these reasons, without repeats, the general questions last.
        With ``limit``, every reason's first question comes before any reason's second one, so a
        short list still covers the most reasons (in the teller's reading order)."""
        lists = [self.questions.get(r, {}).get(lang, []) for r in reasons] + [self._general(reasons)[1].get(lang, [])]
        out: list[str] = []
        for depth in range(max(map(len, lists), default=0)):
            for qs in lists if limit else []:
                if depth < len(qs) and qs[depth] not in out:
                    out.append(qs[depth])
        if not limit:
            for qs in lists:
                out += [q for q in qs if q not in out]
        return out[:limit] if limit else out

    def shown(self, reasons, limit: int | None = None) -> list[Question]:
        """The keyed questions put in front of staff for one alert, in reading order: every
        reason's first question before any reason's second, the general ones last (as in
        ``for_reasons``), no text twice, at most ``limit``. The console shows exactly these and
        records answers only to them, so what was asked is what can be recorded."""
        lists = [self._keyed(r, self.questions.get(r, {})) for r in dict.fromkeys(reasons)]
        lists.append(self._keyed(*self._general(reasons)))
        out: list[Question] = []
        seen: set[str] = set()
        for depth in range(max(map(len, lists), default=0)):
            for qs in lists:
                if depth < len(qs) and (qs[depth].en or qs[depth].zh) not in seen:
                    seen.add(qs[depth].en or qs[depth].zh)
                    out.append(qs[depth])
        return out[:limit] if limit else out

    @staticmethod
    def _keyed(section: str, texts: dict) -> list[Question]:
        en, zh, signals = texts.get("en", []), texts.get("zh", []), texts.get("signals", [])
        return [Question(f"{section}.{n + 1}", en[n] if n < len(en) else "", zh[n] if n < len(zh) else "",
                         signals[n] if n < len(signals) else "")
                for n in range(max(len(en), len(zh)))]

    def signal_answers(self, reasons, answers: dict) -> dict:
        """The dialogue signals ({signal: yes | no | declined}) that answers to this alert's questions
        ({question key: answer}) give. Two questions on one signal: the answer that points more to a
        scam stands (a "yes" to one is not undone by a "no" to the other)."""
        out: dict = {}
        for q in self.asked(reasons):
            answer = answers.get(q.key)
            if not q.signal or answer not in _RISK_ORDER:
                continue
            held = out.get(q.signal)
            if held is None or _risk(q.signal, answer) > _risk(q.signal, held):
                out[q.signal] = answer
        return {s: out[s] for s in SIGNALS if s in out}

    def asked(self, reasons) -> list[Question]:
        """Every question that may be asked at an alert with these reasons, keyed: the general ones
        first, then each reason's in the alert's order."""
        sections = [self._general(reasons)] + [(r, self.questions.get(r, {})) for r in dict.fromkeys(reasons)]
        return [q for section, texts in sections for q in self._keyed(section, texts)]


_RISK_ORDER = {"no": 0, "declined": 1, "yes": 2}


def _risk(signal: str, answer: str) -> int:
    # For knows_payee_in_person a "no" is the sign of a scam; for every other signal a "yes" is.
    rank = _RISK_ORDER[answer]
    return 2 - rank if signal == "knows_payee_in_person" and answer != "declined" else rank


def _signals(path, key: str, value, count: int) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise QuestionsError(path, key, "must be a list of signal names (\"\" for a question without one)")
    for v in value:
        if v and v not in SIGNALS:
            raise QuestionsError(path, key, f"unknown signal {v!r}; signals are {', '.join(SIGNALS)}")
    if len(value) > count:
        raise QuestionsError(path, key, f"has {len(value)} signals for {count} questions")
    return list(value)


def _texts(path, key: str, value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise QuestionsError(path, key, "must be a list of non-empty strings")
    return [v.strip() for v in value]


def _parse(data: dict, path) -> CaringQuestions:
    for top in data:
        if top not in ("general", "general_cards", "reasons"):
            raise QuestionsError(path, top, "unknown section; expected [general], [general_cards] and "
                                            "[reasons.<reason>]")
    for section in ("general", "general_cards"):
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise QuestionsError(path, section, "must be a table")
        for key in table:
            if key not in (*LANGS, "signals"):
                raise QuestionsError(path, f"{section}.{key}", f"unknown key; use {' and '.join(LANGS)} and signals")
    labels, questions = {}, {}
    reasons = data.get("reasons", {})
    if not isinstance(reasons, dict):
        raise QuestionsError(path, "reasons", "must be a table of [reasons.<reason>]")
    for reason, table in reasons.items():
        where = f"reasons.{reason}"
        if reason not in REASONS:
            raise QuestionsError(path, where, f"unknown reason; reasons are {', '.join(REASONS)}")
        if not isinstance(table, dict):
            raise QuestionsError(path, where, "must be a table")
        for key in table:
            if key not in ("label_zh", *LANGS, "signals"):
                raise QuestionsError(path, f"{where}.{key}", "unknown key; use label_zh, en, zh and signals")
        if "label_zh" in table:
            if not isinstance(table["label_zh"], str) or not table["label_zh"].strip():
                raise QuestionsError(path, f"{where}.label_zh", "must be a non-empty string")
            labels[reason] = table["label_zh"].strip()
        questions[reason] = {lang: _texts(path, f"{where}.{lang}", table.get(lang, [])) for lang in LANGS}
        count = max(len(questions[reason]["en"]), len(questions[reason]["zh"]))
        questions[reason]["signals"] = _signals(path, f"{where}.signals", table.get("signals", []), count)
    generals = {}
    for section in ("general", "general_cards"):
        table = data.get(section, {})
        texts = {lang: _texts(path, f"{section}.{lang}", table.get(lang, [])) for lang in LANGS}
        texts["signals"] = _signals(path, f"{section}.signals", table.get("signals", []),
                                    max(len(texts["en"]), len(texts["zh"])))
        generals[section] = texts
    return CaringQuestions(labels, questions, generals["general"], generals["general_cards"])


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QuestionsError(path, None, "no such file (supervisor.questions_file)") from None
    except OSError as exc:
        raise QuestionsError(path, None, f"cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise QuestionsError(path, None, f"not valid TOML: {exc}") from None


def load_questions(path: str | Path | None = None) -> CaringQuestions:
    """The bundled questions, overlaid with the branch's own file if given."""
    base = _parse(_read(DEFAULT_PATH), DEFAULT_PATH)
    if not path:
        return base
    own = _parse(_read(Path(path)), path)
    merged = []
    for mine, bundled in ((own.general, base.general), (own.general_cards, base.general_cards)):
        general = {lang: mine.get(lang) or bundled.get(lang, []) for lang in LANGS}
        # A branch's own general questions carry their own signals (or none); the bundled ones keep theirs.
        general["signals"] = mine.get("signals", []) if mine.get("en") or mine.get("zh") \
            else bundled.get("signals", [])
        merged.append(general)
    return CaringQuestions({**base.labels_zh, **own.labels_zh}, {**base.questions, **own.questions}, *merged)
