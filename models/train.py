"""Train the counter fraud model: simulate, build features the gateway's way, fit, convert to int8.

Reproduce the bundled model (needs the ``train`` extra, i.e. tensorflow-cpu; about a minute)::

    python -m counterguard.models.train --seed 7 --events 150000 --out models/

Train across many simulated branches, each drawing its own habits (typology mix, fraud rate, amounts,
teller-flag and purpose habits; ``simulate.random_world``), each split by time on its own
(models/README.md, "Cold start")::

    python -m counterguard.models.train --seed 7 --events 2400000 --worlds 480 --out challenger/

Train on a bank's own labelled events as well (models/cases.py; each file is replayed on its own,
split by time like the simulated events, and the thresholds are set on its training part)::

    python -m counterguard.models.train --cases region-2026h2.jsonl --out new-model/

Steps, each a function so tests and a later typology study can call them:

1. ``simulate`` events (models/simulate.py), time-ordered.
2. ``feature_rows``: replay them in time order through ``counterguard.core.features`` exactly as the gateway
   does (each account's history from its earlier events at this gateway), so training and serving
   cannot drift.
3. ``time_split``: the first 80 % of the time span trains, the last 20 % tests (never random: a
   model is always used on days after the ones it learnt from).
4. Standardise with the training split's mean and scale, fit a small Keras MLP with class weights.
5. Convert to a full-int8 TFLite model (int8 in and out), calibrated on batches of training rows.
6. Choose thresholds and measure on the int8 model itself, run through a TFLite interpreter, and
   write ``counterguard-v1.tflite``, its manifest ``counterguard-v1.json`` and ``golden.json``.

TensorFlow is imported only inside the functions that need it: the rest runs on the gateway's
own Python, where the tests use it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from collections import defaultdict, deque
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from counterguard.core.dialogue import said_scam_script
from counterguard.core.events import parse_event
from counterguard.core.features import (
    DAY,
    FEATURE_NAMES,
    FEATURES_VERSION,
    PHONE_DAYS,
    VISIT_DAYS,
    VISITS_LIMIT,
    ListHits,
    Visits,
    card_counts,
    event_features,
    summarise_history,
    summarise_visits,
    with_answers,
)
from counterguard.models.cases import CasesError, file_digest, load_cases
from counterguard.models.simulate import TYPOLOGIES, SimConfig, simulate, simulate_worlds

NAME = "counterguard-v1"
VERSION = "3.0.0"
TRAIN_SHARE = 0.8
# Amber: at most 1 % of legitimate events get the caring questions (three a day at a 300-event
# branch: tellers stop trusting a lamp that cries wolf). Red: at most 0.2 % are held for the
# supervisor, so a red is fraud more often than not.
AMBER_LEGIT_SHARE = 0.01
RED_LEGIT_SHARE = 0.002
HIDDEN = (64, 32)
EPOCHS = 20
EVENTS = 150_000
WORLDS = 0  # simulated branches with their own habits (0: the reference branch alone)
BATCH = 256
CALIBRATION_BATCH = 256
CALIBRATION_BATCHES = 32
GOLDEN_ROWS = 50
CLIP = 6.0  # standardised inputs are kept within +-CLIP (see standardiser)
BINARY_SCALE_FLOOR = 0.5  # a 0/1 column's scale is at least this (see standardiser)
# Weight decay on the hidden layers: a smoother network keeps the int8 model's scores within a few
# hundredths of the float model's, with fifty inputs as with twenty-nine (see int8_model).
L2 = 1e-3
LOGIT_CLIP = 8.0  # scores span sigmoid(-8)..sigmoid(8), 0.0003..0.9997 (see fit)


def replay_items(items: list[dict], identity_key: bytes | None = None):
    """Yield ``(event, history, item)`` for time-ordered simulated items, as the gateway would see them.

    Each account's history is the ``(epoch, amount, counter)`` of its earlier events, summarised by
    ``counterguard.core.features.summarise_history`` exactly as the gateway summarises its SQLite history.
    ``identity_key`` hashes identity fields as a gateway does; card events need it, as their history is
    kept per person (the hash takes the account's place).
    """
    seen: dict[str, deque] = defaultdict(deque)
    last = float("-inf")
    for item in items:
        event = parse_event(item["event"], identity_key)
        now = event.epoch
        if now < last:
            raise ValueError(f"event {event.event_id} is earlier than the one before it; replay needs time order")
        last = now
        prior = seen[event.account]
        while prior and now - prior[0][0] > DAY:
            prior.popleft()
        yield event, summarise_history(prior, now, event.counter), item
        prior.append((now, event.amount, event.counter))


class VisitBook:
    """Card events replayed so far, kept as a gateway's store gives them back (``Store.card_visits``:
    the newest ``limit`` in each window), so a replayed card event sees the same ``Visits``."""

    def __init__(self, limit: int = VISITS_LIMIT):
        self.limit = limit
        self._persons: dict[tuple, deque] = defaultdict(deque)
        self._phones: dict[str, deque] = defaultdict(deque)

    def see(self, event) -> Visits:
        """The event's ``Visits``, then the event kept for those after it (card events only)."""
        now, person = event.epoch, event.account
        held, asked = card_counts(event)
        prior = self._window(self._persons[(person, event.kind)], now, VISIT_DAYS)
        phone = event.customer_phone_hash
        persons = self._window(self._phones[phone], now, PHONE_DAYS) if phone else []
        visits = summarise_visits(prior, persons, now, held, person)
        self._persons[(person, event.kind)].append((now, held, asked))
        if phone:
            self._phones[phone].append((now, person))
        return visits

    def _window(self, kept: deque, now: float, days: int) -> list:
        while kept and now - kept[0][0] > days * DAY:
            kept.popleft()
        newest = []
        for record in reversed(kept):  # newest first, as the store reads them, at most ``limit``
            if record[0] < now:
                newest.append(record)
                if len(newest) == self.limit:
                    break
        return newest


def item_hits(item: dict) -> ListHits | None:
    """What the lists of persons said about an item's customer (``item["signals"]``, models/simulate.py
    ``counter_signals``); None when nobody could look (no identity sent, or an item without signals)."""
    signals = item.get("signals")
    if not signals or not signals.get("identity"):
        return None
    return ListHits(persons_checked=True, warned_person=bool(signals.get("warned")),
                    restricted_person=bool(signals.get("restricted")))


def item_hold(item: dict, lists: bool = True) -> bool:
    """Red whatever the model says: the account on the stop-payment list, or (with ``lists``) the
    customer restricted or the payee's account on the stop-payment list."""
    signals = item.get("signals") or {}
    return bool(item.get("watchlisted")) or (lists and bool(signals.get("restricted") or signals.get("payee_listed")))


def item_answers(item: dict) -> dict | None:
    """The answers the customer would give to the caring questions, if the item has any."""
    return (item.get("signals") or {}).get("answers") or None


def feature_rows(items: list[dict], *, lists: bool = True):
    """(first rows, final rows, labels, epochs) for time-ordered items, replayed as the gateway would.

    A first row is what the gateway scores when the event arrives (the lists of persons, with
    ``lists``, but no answers yet); a final row adds the customer's answers to the caring questions
    (``with_answers``), for items that have them (others repeat their first row)."""
    first, final, labels, epochs = [], [], [], []
    for event, history, item in replay_items(items):
        row = event_features(event, history, item_hits(item) if lists else None)
        first.append(row)
        answers = item_answers(item)
        final.append(with_answers(row, answers) if answers else row)
        labels.append(int(item["label"]))
        epochs.append(event.epoch)
    return (np.asarray(first, np.float32), np.asarray(final, np.float32), np.asarray(labels, np.int8),
            np.asarray(epochs, np.float64))


def two_stage(first: np.ndarray, final: np.ndarray, red: float | None = None,
              scripted: np.ndarray | None = None) -> np.ndarray:
    """The score that decides whether an event ends alerted when the teller asks the caring questions at
    amber and the answers re-score it: alerted at threshold t exactly when first >= t (asked) and the
    re-score >= t, i.e. when min(first, final) >= t. The first score stands where it is at or above
    ``red`` (a red is the supervisor's to resolve) and where the customer said yes to a scam's script
    (``scripted``: never cleared, core/decision.py ``after_answers``). One ranking, so alert budgets
    apply as to a score."""
    stands = np.zeros(len(first), bool) if scripted is None else scripted.copy()
    if red is not None:
        stands |= first >= red
    return np.where(stands, first, np.minimum(first, final))


def scripted_yes(items: list[dict]) -> np.ndarray:
    """Items whose customer would say yes to any part of a scam's script when asked."""
    return np.asarray([said_scam_script(item_answers(item) or {}) for item in items])


def time_split(epochs: np.ndarray, share: float = TRAIN_SHARE) -> np.ndarray:
    """Boolean mask of training rows: those in the first ``share`` of the time span."""
    cut = epochs.min() + share * (epochs.max() - epochs.min())
    return epochs < cut


def standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) per feature from the training rows.

    The scale is the standard deviation, widened where needed so that every training value lands
    within +-CLIP. The int8 input tensor has one scale for all features, so a rare flag standardised
    to +14 would otherwise stretch the range and blur amounts and ages into a few coarse steps.
    """
    mean = x.mean(axis=0)
    scale = np.maximum(x.std(axis=0), np.abs(x - mean).max(axis=0) / CLIP)
    # A rare 0/1 column (an answer few customers give) would otherwise sit at +CLIP, and twenty of
    # them stretch the hidden layers' int8 ranges: at most 2 standard units for a yes.
    binary = np.all((x == 0) | (x == 1), axis=0)
    scale[binary] = np.maximum(scale[binary], BINARY_SCALE_FLOOR)
    scale[scale < 1e-6] = 1.0
    return mean.astype(np.float32), scale.astype(np.float32)


def seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def fit(x: np.ndarray, y: np.ndarray, seed: int, epochs: int = EPOCHS, weights: np.ndarray | None = None):
    """A small MLP N -> 64 -> 32 -> 1 (sigmoid) on standardised rows, fraud weighted up.

    The logit is clipped to +-LOGIT_CLIP before the sigmoid. Without it, the int8 logit tensor spans
    the very negative logits of everyday events and its steps come out so coarse that scores near
    the red threshold jump by 0.05-0.1; clipped, a step moves a score by well under 0.01.
    """
    import keras

    seed_everything(seed)
    n = x.shape[1]
    model = keras.Sequential([keras.Input((n,), name="features")]
                             + [keras.layers.Dense(h, activation="relu", kernel_regularizer=keras.regularizers.l2(L2))
                                for h in HIDDEN]
                             + [keras.layers.Dense(1, name="logit"),
                                keras.layers.Lambda(lambda z: keras.ops.clip(z, -LOGIT_CLIP, LOGIT_CLIP), name="clip"),
                                keras.layers.Activation("sigmoid", name="score")])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    positives = max(int(y.sum()), 1)
    # Balance the classes only part way (weight ~ sqrt of the ratio): fully balanced weights push
    # every large withdrawal towards 1 and leave no room between amber and red.
    weight = float(np.sqrt((len(y) - positives) / positives))
    # Rows from a bank's own cases may count more than simulated ones (``weights``, 1 by default).
    rows = np.where(y == 1, weight, 1.0) * (1.0 if weights is None else weights)
    model.fit(x, y.astype(np.float32), epochs=epochs, batch_size=BATCH, shuffle=True, verbose=0,
              sample_weight=rows.astype(np.float32))
    return model


def standardised(rows: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Rows as the model's input: standardised with the training split's mean and scale, clipped."""
    return np.clip((rows - mean) / scale, -CLIP, CLIP).astype(np.float32)


def int8_model(model, x_train: np.ndarray, y_train: np.ndarray, mean, scale, seed: int) -> bytes:
    """The fitted model as full-int8 TFLite, calibrated on a sample of the raw training rows."""
    std = lambda rows: standardised(rows, mean, scale)  # noqa: E731
    rng = np.random.default_rng(seed)
    picks = min(len(x_train), CALIBRATION_BATCH * CALIBRATION_BATCHES)
    calibration = std(x_train[rng.choice(len(x_train), picks, replace=False)])
    # Calibrate on every fraud row and each feature's training extremes too, so the int8 ranges
    # cover the rare rows that score high and nothing the model learnt from is clipped.
    # One feature at a time: a row with every feature at its extreme at once (all answers "yes", "no"
    # and "declined" together) would stretch the hidden layers' int8 ranges far past any real row.
    typical = np.median(x_train, axis=0)
    lows, highs = np.tile(typical, (x_train.shape[1], 1)), np.tile(typical, (x_train.shape[1], 1))
    np.fill_diagonal(lows, x_train.min(axis=0))
    np.fill_diagonal(highs, x_train.max(axis=0))
    extremes = std(np.concatenate([lows, highs]))
    calibration = np.concatenate([calibration, std(x_train[y_train == 1]), extremes])
    return to_int8_tflite(model, calibration)


def write_model(out: Path, name: str, tflite: bytes) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.tflite"
    path.write_bytes(tflite)
    return path


def card_head(name: str, version: str, mean, scale, tflite: bytes, amber: float, red: float) -> dict:
    """What every model card starts with: what the gateway checks the model against at load."""
    return {
        "name": name,
        "version": version,
        "features_version": FEATURES_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "mean": [float(v) for v in mean],
        "scale": [float(v) for v in scale],
        "sha256": hashlib.sha256(tflite).hexdigest(),
        "thresholds": {"amber": amber, "red": red},
    }


def to_int8_tflite(model, calibration: np.ndarray) -> bytes:
    """Full-integer TFLite: int8 input, int8 output, calibrated on batches of standardised rows."""
    import tensorflow as tf

    def representative():
        for start in range(0, len(calibration), CALIBRATION_BATCH):
            yield [calibration[start:start + CALIBRATION_BATCH]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def int8_scores(tflite: bytes, x_std: np.ndarray) -> np.ndarray:
    """Scores of standardised rows through a TFLite interpreter (LiteRT if present, else TF's own)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_content=tflite)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], [len(x_std), x_std.shape[1]])
    interpreter.allocate_tensors()
    s_in, z_in = inp["quantization"]
    s_out, z_out = out["quantization"]
    q = np.clip(np.rint(x_std / s_in + z_in), -128, 127).astype(np.int8)
    interpreter.set_tensor(inp["index"], q)
    interpreter.invoke()
    return ((interpreter.get_tensor(out["index"]).astype(np.float32) - z_out) * s_out).reshape(-1)


def choose_thresholds(scores: np.ndarray, y: np.ndarray, *, amber_share: float = AMBER_LEGIT_SHARE,
                      red_share: float = RED_LEGIT_SHARE) -> tuple[float, float]:
    """Amber and red as the lowest int8 score levels that alert at most ``amber_share`` and
    ``red_share`` of the legitimate events."""
    legit = np.sort(scores[y == 0])
    levels = np.unique(scores)

    def lowest_level_within(share: float) -> float:
        for level in levels:
            if (legit >= level).mean() <= share and level > 0:
                return float(level)
        return float(levels[-1])

    amber = lowest_level_within(amber_share)
    red = max(lowest_level_within(red_share), amber + 1 / 256)
    # Exact output levels (multiples of 1/256), never rounded: a threshold rounded up past its level
    # would turn every event scored exactly at it a level down.
    return amber, min(red, 1.0)


def average_precision(scores: np.ndarray, y: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    hits = y[order] == 1
    if not hits.any():
        return 0.0
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def red_scores(first: np.ndarray, final: np.ndarray, amber: float) -> np.ndarray:
    """The score that decides red in the two-stage flow: the re-score of those asked at amber, and the
    first score where it is higher (a red stands)."""
    return np.where(first >= amber, np.maximum(first, final), first)


def choose_two_stage_thresholds(first: np.ndarray, final: np.ndarray, y: np.ndarray,
                                scripted: np.ndarray | None = None) -> tuple[float, float]:
    """Amber and red when the customers alerted at amber answer the caring questions and the re-score
    decides: amber leaves at most AMBER_LEGIT_SHARE of legitimate events alerted after the answers
    (``two_stage``), red at most RED_LEGIT_SHARE held."""
    amber, _ = choose_thresholds(two_stage(first, final, scripted=scripted), y)
    _, red = choose_thresholds(red_scores(first, final, amber), y)
    red = max(red, amber + 1 / 256)
    # A first red stands whatever the answers: with red known, amber once more on that ranking.
    amber, _ = choose_thresholds(two_stage(first, final, red, scripted), y)
    return amber, max(red, amber + 1 / 256)


def metrics(scores: np.ndarray, y: np.ndarray, amber: float, red: float, red_scores: np.ndarray | None = None) -> dict:
    fraud, legit = y == 1, y == 0
    alerted = scores >= amber
    held = (scores if red_scores is None else red_scores) >= red
    held &= alerted
    return {
        "events": int(len(y)),
        "fraud_events": int(fraud.sum()),
        "recall_alerted": round(float(alerted[fraud].mean()), 4) if fraud.any() else None,
        "recall_red": round(float(held[fraud].mean()), 4) if fraud.any() else None,
        "legit_alerted_share": round(float(alerted[legit].mean()), 4),
        "legit_red_share": round(float(held[legit].mean()), 4),
        "red_precision": round(float(fraud[held].mean()), 4) if held.any() else None,
        "amber_or_red_precision": round(float(fraud[alerted].mean()), 4) if alerted.any() else None,
        "average_precision": round(average_precision(scores, y), 4),
    }


def golden_rows(x: np.ndarray, float_scores: np.ndarray, amber: float, red: float) -> list[dict]:
    """About 50 fixed raw rows with the float model's scores, spread over the whole score range.

    Per level, rows are picked nearest to evenly spaced target scores (random picks would all sit
    at 0 or right at a threshold), so the golden set checks the int8 model across each band.
    """
    bands = ((0.0, amber, 17), (amber, red, 17), (red, 1.0, 16))
    chosen: list[int] = []
    for lo, hi, count in bands:
        inside = np.flatnonzero((float_scores >= lo) & (float_scores < hi if hi < 1.0 else float_scores <= hi))
        for target in np.linspace(lo, hi, count):
            free = inside[~np.isin(inside, chosen)]
            if len(free):
                chosen.append(int(free[np.argmin(np.abs(float_scores[free] - target))]))
    return [{"features": [float(v) for v in x[i]], "float_score": round(float(float_scores[i]), 6)}
            for i in sorted(chosen)]


def typology_order(typologies: np.ndarray) -> list[str]:
    """The training simulator's typologies in its order, then any other set's own names; unnamed left out."""
    present = set(typologies.tolist()) - {""}
    return [n for n in TYPOLOGIES if n in present] + sorted(present - set(TYPOLOGIES))


def pooled(sources: list["Source"], name: str) -> "Source":
    """Several simulated sources as one, each keeping its own time split."""
    whole = object.__new__(Source)
    whole.name, whole.cases = name, False
    for key in ("x", "x_final", "answered", "scripted", "y", "train", "typologies"):
        setattr(whole, key, np.concatenate([getattr(s, key) for s in sources]))
    return whole


class Source:
    """One replayed set of events (the simulator's, or one cases file): features, labels, time split."""

    def __init__(self, name: str, items: list[dict], *, cases: bool, check: bool = True):
        self.name = name
        self.cases = cases  # a bank's labelled events, not the simulator's
        self.x, self.x_final, self.y, when = feature_rows(items)
        self.answered = np.asarray([item_answers(item) is not None for item in items])
        self.scripted = scripted_yes(items)
        self.train = time_split(when)
        self.typologies = np.asarray([item.get("typology") or "" for item in items])
        # One of many simulated worlds may be short of fraud on its own; the worlds are judged together.
        if check and (self.y[self.train].sum() == 0 or self.y[~self.train].sum() == 0):
            raise SystemExit(f"{name}: {len(self.y)} events give no fraud in the first 80 % or the last 20 % of their "
                             "time span; use more events")


def simulated_sources(seed: int, n_events: int, worlds: int = 0, config: SimConfig | None = None) -> list[Source]:
    """The simulated part of training: one reference branch, or ``worlds`` branches with their own habits,
    each replayed and split by time on its own."""
    if not n_events:
        return []
    if not worlds:
        return [Source("simulated", simulate(seed, n_events, config=config), cases=False)]
    if config is not None:
        raise ValueError("a config sets one branch; --worlds draws each branch's own")
    sources = [Source(name, items, cases=False, check=False) for name, items in simulate_worlds(seed, worlds, n_events)]
    if sum(int(s.y[s.train].sum()) for s in sources) == 0 or sum(int(s.y[~s.train].sum()) for s in sources) == 0:
        raise SystemExit(f"{worlds} worlds of {n_events // worlds} events give no fraud in a split; use more events")
    return sources


def train(seed: int, n_events: int, out: Path, *, epochs: int = EPOCHS, config: SimConfig | None = None,
          cases=(), cases_weight: float = 1.0, worlds: int = 0, log=print) -> dict:
    """The whole pipeline; writes the model, manifest and golden rows into ``out``. Returns the manifest.

    ``n_events`` simulated events (0 for none) and each labelled-cases file in ``cases`` are replayed
    and split by time on their own. With ``worlds``, the simulated events are shared between that
    many randomized branches (``simulate_worlds``), each split by time on its own; thresholds and the
    headline metrics then pool the branches. With cases, the thresholds are set on the cases'
    training part (the bank's own customers), and case rows weigh ``cases_weight`` times a simulated row.
    """
    t0 = time.monotonic()
    seed_everything(seed)
    sources = simulated_sources(seed, n_events, worlds, config)
    case_records = []
    for path in cases:
        items, problems = load_cases(path)
        for problem in problems:
            log(f"{path}: {problem} (left out)")
        source = Source(str(path), items, cases=True)
        sources.append(source)
        case_records.append({"file": Path(path).name, "sha256": file_digest(path), "events": int(len(source.y)),
                             "fraud_events": int(source.y.sum()), "bad_lines": len(problems)})
    if not sources:
        raise SystemExit("nothing to train on: simulate some events or give labelled cases")
    # Thresholds and the headline metrics come from the bank's own events when there are any.
    primary = [s for s in sources if s.cases] or sources

    def training_rows(which):
        # Each event as the gateway first scores it, and once more with the customer's answers where
        # there are any: the same network learns the first verdict and the re-score after the dialogue.
        x = [s.x[s.train] for s in which] + [s.x_final[s.train & s.answered] for s in which]
        y = [s.y[s.train] for s in which] + [s.y[s.train & s.answered] for s in which]
        return np.concatenate(x), np.concatenate(y)

    x_train, y_train = training_rows(sources)
    mean, scale = standardiser(x_train)
    std = lambda rows: standardised(rows, mean, scale)  # noqa: E731
    for s in sources if not worlds else [pooled(sources[:worlds], f"{worlds} simulated worlds")] + sources[worlds:]:
        log(f"{s.name}: {len(s.y)} events ({s.y.mean():.2%} fraud): {int(s.train.sum())} train, "
            f"{int((~s.train).sum())} test")

    weights = None
    if case_records:
        weights = np.concatenate([np.full(int(s.train.sum()), cases_weight if s.cases else 1.0) for s in sources]
                                 + [np.full(int((s.train & s.answered).sum()), cases_weight if s.cases else 1.0)
                                    for s in sources])
    model = fit(std(x_train), y_train, seed, epochs, weights)
    tflite = int8_model(model, x_train, y_train, mean, scale, seed)

    first_t = np.concatenate([s.x[s.train] for s in primary])
    final_t = np.concatenate([s.x_final[s.train] for s in primary])
    y_threshold = np.concatenate([s.y[s.train] for s in primary])
    scripted_t = np.concatenate([s.scripted[s.train] for s in primary])
    first_scores, final_scores = int8_scores(tflite, std(first_t)), int8_scores(tflite, std(final_t))
    amber, red = choose_two_stage_thresholds(first_scores, final_scores, y_threshold, scripted_t)
    first_amber, first_red = choose_thresholds(first_scores, y_threshold)
    train_scores = two_stage(first_scores, final_scores, red, scripted_t)
    band = lambda s: np.digitize(s, [first_amber, first_red])  # noqa: E731  (0 green, 1 amber, 2 red)
    by_source = {}
    if worlds:  # judged together: the last 20 % of each world's time
        sources = [pooled(sources[:worlds], "simulated")] + sources[worlds:]
        primary = [s for s in sources if s.cases] or sources
    for s in sources:
        x_test, y_test = s.x[~s.train], s.y[~s.train]
        first_test = int8_scores(tflite, std(x_test))
        final_test = int8_scores(tflite, std(s.x_final[~s.train]))
        test_scores = two_stage(first_test, final_test, red, s.scripted[~s.train])
        m = metrics(test_scores, y_test, amber, red, red_scores=red_scores(first_test, final_test, amber))
        m["first_verdict"] = metrics(first_test, y_test, first_amber, first_red)
        m["asked_legit_share"] = round(float((first_test[y_test == 0] >= amber).mean()), 4)
        kinds = s.typologies[~s.train]
        m["alerted_share_by_typology"] = {
            n: round(float((test_scores[kinds == n] >= amber).mean()), 4) for n in typology_order(kinds)}
        float_test = model.predict(std(x_test), verbose=0, batch_size=4096).reshape(-1)
        m["int8_float_level_agreement"] = round(float((band(float_test) == band(first_test)).mean()), 4)
        m["int8_float_max_gap"] = round(float(np.abs(float_test - first_test).max()), 4)
        by_source[s.name] = (m, x_test, float_test)
    head, head_x, head_float = by_source[primary[0].name]

    model_path = write_model(out, NAME, tflite)
    split = ("last 20% of the simulated time span, int8 model" if not case_records else
             f"last 20% of the time span of {primary[0].name}, int8 model")
    if worlds and not case_records:
        split = f"last 20% of each of the {worlds} simulated worlds' time span, int8 model"
    manifest = {
        **card_head(NAME, VERSION, mean, scale, tflite, first_amber, first_red),
        "threshold_rule": f"lowest int8 score levels alerting at most {AMBER_LEGIT_SHARE:.1%} (amber) and "
                          f"{RED_LEGIT_SHARE:.1%} (red) of legitimate training events at the first verdict"
                          + (" of the labelled cases" if case_records else ""),
        # Where every alerted customer is asked the caring questions and the terminal sends the answers,
        # the teller can ask more customers (amber) and let the answers clear most of them: these hold
        # the final verdict to the same shares of honest customers (models/README.md, "Lists and answers").
        "dialogue_thresholds": {"amber": amber, "red": red},
        "metrics": {"split": split, **head,
                    "train_legit_alerted_share": round(float((train_scores[y_threshold == 0] >= amber).mean()), 4)},
        "seed": seed,
        "events": n_events,
        **({"worlds": worlds} if worlds else {}),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if case_records:
        manifest["cases"] = case_records
        manifest["cases_weight"] = cases_weight
        manifest["metrics_by_source"] = {name: m for name, (m, _, _) in by_source.items()}
    (out / f"{NAME}.json").write_text(json.dumps(manifest, indent=1) + "\n")
    golden = {
        "model": NAME, "version": VERSION, "thresholds": manifest["thresholds"],
        "rows": golden_rows(head_x, head_float, first_amber, first_red),
    }
    (out / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    log(f"model {model_path} ({len(tflite)} bytes), thresholds amber={amber} red={red}")
    for name, (m, _, _) in by_source.items():
        log(f"{name} test split (int8): " + ", ".join(f"{k}={v}" for k, v in m.items()))
    log(f"done in {time.monotonic() - t0:.1f} s")
    return manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m counterguard.models.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=7, help="seed for the simulator, numpy, python and keras (default 7)")
    p.add_argument("--events", type=int, default=EVENTS, help=f"simulated events (default {EVENTS})")
    p.add_argument("--worlds", type=int, default=WORLDS,
                   help="share the simulated events between N branches, each drawing its own habits (typology mix, "
                        f"fraud rate, amounts, teller-flag and purpose habits); 0 for the reference branch alone "
                        f"(default {WORLDS})")
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"training epochs (default {EPOCHS})")
    p.add_argument("--out", type=Path, default=Path("models"), help="folder for the model, manifest and golden rows")
    p.add_argument("--cases", type=Path, action="append", default=[], metavar="FILE.jsonl",
                   help="also train on a bank's labelled events (counterguard export-events --labelled, frauds found "
                        "later set to label 1); repeatable; the thresholds are then set on them")
    p.add_argument("--cases-weight", type=float, default=1.0,
                   help="how much a case row counts against a simulated one (default 1)")
    args = p.parse_args(argv)
    if args.events == 0 and not args.cases:
        p.error("--events 0 leaves nothing to train on without --cases")
    if args.events and args.events < 1000:
        p.error("--events must be at least 1000 so both splits hold some fraud (or 0, to train on --cases alone)")
    if not args.cases_weight > 0:
        p.error("--cases-weight must be greater than 0")
    if args.worlds < 0 or (args.worlds and args.events and args.events < 1000 * args.worlds):
        p.error("--worlds must be 0 or more, with at least 1000 --events per world")
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        p.error("training needs TensorFlow: pip install 'counterguard[train]' (tensorflow-cpu) and run again")
    try:
        train(args.seed, args.events, args.out, epochs=args.epochs, cases=args.cases, cases_weight=args.cases_weight,
              worlds=args.worlds)
    except CasesError as e:
        p.exit(2, f"python -m counterguard.models.train: {e}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
