"""The fraud model at the counter: a full-int8 TFLite file plus the manifest that says how to feed it.

A model is two files with the same stem: ``counterguard-v1.tflite`` and ``counterguard-v1.json``.
The manifest carries the feature names and version the model was trained on, the standardisation
(mean, scale), the sha256 of the .tflite and the suggested amber/red thresholds. ``FraudModel.load``
refuses a model whose manifest does not match this gateway's features, so a model trained on other
inputs can never score events silently wrong.

Runtime: LiteRT (``ai-edge-litert``, 64-bit Pi OS and x86_64) or, on 32-bit Pi OS where LiteRT has
no wheels, ``tflite-runtime``. Usage::

    from counterguard.gateway.scoring.model import FraudModel, default_model_path
    model = FraudModel.load(default_model_path())
    score = model.score(event_features(event, history))   # 0..1
    model.thresholds                                        # Thresholds(amber=..., red=...)
"""

from __future__ import annotations

import hashlib
import json
import math
from importlib import resources
from pathlib import Path

import numpy as np

from counterguard.core import jsontext
from counterguard.core.decision import Thresholds
from counterguard.core.features import FEATURE_NAMES, FEATURES_VERSION

BUNDLED_MODEL = "counterguard-v1.tflite"
_MANIFEST_KEYS = ("name", "version", "features_version", "feature_names", "mean", "scale", "sha256", "thresholds")


class ModelError(ValueError):
    """A model file or its manifest cannot be used; ``path`` names the file at fault."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def default_model_path() -> Path:
    """The model bundled with the gateway package (``models/counterguard-v1.tflite``)."""
    return Path(str(resources.files("counterguard.models").joinpath(BUNDLED_MODEL)))


def _interpreter_class():
    """LiteRT first; tflite-runtime where LiteRT has no wheels (32-bit ARM)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:
        return None, None


def _read_manifest(model_path: Path) -> dict:
    manifest_path = model_path.with_suffix(".json")
    if not manifest_path.is_file():
        raise ModelError(manifest_path, f"the manifest for {model_path.name} is missing; "
                                        "install the .json that was shipped with the model beside it")
    try:
        manifest = jsontext.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(manifest_path, f"the manifest is not valid JSON ({e}); reinstall it from the model release") from None
    if not isinstance(manifest, dict):
        raise ModelError(manifest_path, "the manifest must be a JSON object; reinstall it from the model release")
    missing = [k for k in _MANIFEST_KEYS if k not in manifest]
    if missing:
        raise ModelError(manifest_path, f"the manifest lacks {', '.join(missing)}; reinstall it from the model release")
    if manifest["features_version"] != FEATURES_VERSION:
        raise ModelError(manifest_path, f"the model was trained on features version {manifest['features_version']} "
                                        f"but this gateway computes version {FEATURES_VERSION}; install a model "
                                        "trained for this gateway release")
    if list(manifest["feature_names"]) != list(FEATURE_NAMES):
        theirs, ours = list(manifest["feature_names"]), list(FEATURE_NAMES)
        first = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b), min(len(theirs), len(ours)))
        raise ModelError(manifest_path, f"the model's feature names differ from this gateway's at position {first} "
                                        f"({theirs[first] if first < len(theirs) else 'end'!r} vs "
                                        f"{ours[first] if first < len(ours) else 'end'!r}); install a model trained "
                                        "for this gateway release")
    n = len(FEATURE_NAMES)
    for key in ("mean", "scale"):
        values = manifest[key]
        if (not isinstance(values, list) or len(values) != n
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)):
            raise ModelError(manifest_path, f"'{key}' must be {n} finite numbers; reinstall the manifest")
    if any(v == 0 for v in manifest["scale"]):
        raise ModelError(manifest_path, "'scale' must not contain 0; reinstall the manifest")
    for key in ("thresholds", "dialogue_thresholds"):
        t = manifest.get(key)
        if t is None:  # dialogue thresholds are optional: models trained before the dialogue have none
            manifest["_" + key] = None
            continue
        try:
            manifest["_" + key] = Thresholds(float(t["amber"]), float(t["red"]))
        except (TypeError, KeyError, ValueError) as e:
            raise ModelError(manifest_path, f"'{key}' must be {{'amber': a, 'red': r}} with 0 < a < r <= 1 ({e})") from None
    return manifest


class FraudModel:
    """A loaded, verified int8 model. Build it with ``FraudModel.load(path)``.

    ``score`` is the per-event hot path: the row is standardised and quantised into one preallocated
    int8 buffer in a single numpy expression, so a call costs a few microseconds.
    """

    def __init__(self, path: Path, manifest: dict, interpreter, runtime: str, sha256: str):
        self.path = path
        self.manifest = manifest
        self.name: str = manifest["name"]
        self.version: str = str(manifest["version"])
        self.sha256 = sha256
        self.runtime = runtime
        self.thresholds: Thresholds = manifest["_thresholds"]
        # For a branch whose tellers send the caring dialogue's answers (config thresholds.dialogue):
        # amber asks more customers, and the re-score with their answers clears most of them.
        self.dialogue_thresholds: Thresholds | None = manifest["_dialogue_thresholds"]
        self._interpreter = interpreter
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        n = len(FEATURE_NAMES)
        if list(inp["shape"]) != [1, n] or inp["dtype"] != np.int8 or out["dtype"] != np.int8:
            raise ModelError(path, f"expected an int8 model with input [1, {n}] and int8 output, got input "
                                   f"{list(inp['shape'])} {np.dtype(inp['dtype']).name}, output "
                                   f"{np.dtype(out['dtype']).name}; retrain with python -m counterguard.models.train")
        in_scale, in_zero = inp["quantization"]
        self._out_scale, self._out_zero = out["quantization"]
        if not in_scale or not self._out_scale:
            raise ModelError(path, "the model's tensors are not quantised; retrain with python -m counterguard.models.train")
        mean = np.asarray(manifest["mean"], np.float64)
        scale = np.asarray(manifest["scale"], np.float64)
        # q = (x - mean) / scale / in_scale + zero, folded into one multiply and one add.
        self._mul = 1.0 / (scale * in_scale)
        self._add = in_zero - mean * self._mul
        self._in_index = inp["index"]
        self._out_index = out["index"]
        self._buffer = np.zeros((1, n), np.int8)
        self._work = np.zeros(n, np.float64)
        # minimum/maximum against arrays are about twice as fast as np.clip on a 25-value row.
        self._q_lo = np.full(n, -128.0)
        self._q_hi = np.full(n, 127.0)

    @classmethod
    def load(cls, path) -> "FraudModel":
        """Load ``path`` (a .tflite) and its same-stem .json manifest, verifying both."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(path, "no such model file; check model.path in the config or reinstall counterguard")
        manifest = _read_manifest(path)
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != manifest["sha256"]:
            raise ModelError(path, f"sha256 {digest[:12]}... does not match the manifest's {str(manifest['sha256'])[:12]}...; "
                                   "the file is damaged or not the one the manifest describes - reinstall both files")
        interpreter_cls, runtime = _interpreter_class()
        if interpreter_cls is None:
            raise ModelError(path, "no TFLite runtime is installed; pip install ai-edge-litert "
                                   "(or tflite-runtime with numpy<2 on 32-bit Pi OS)")
        try:
            interpreter = interpreter_cls(model_content=data)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(path, f"the TFLite runtime cannot load this model ({e}); reinstall it") from None
        return cls(path, manifest, interpreter, runtime, digest)

    def score(self, row) -> float:
        """Fraud score 0..1 for one raw feature row (``counterguard.core.features.event_features`` order)."""
        if len(row) != len(self._work):
            raise ValueError(f"a feature row has {len(self._work)} values (FEATURE_NAMES), got {len(row)}")
        work = self._work
        np.multiply(row, self._mul, out=work)
        np.add(work, self._add, out=work)
        np.rint(work, out=work)
        np.maximum(work, self._q_lo, out=work)
        np.minimum(work, self._q_hi, out=work)
        self._buffer[0] = work
        interpreter = self._interpreter
        interpreter.set_tensor(self._in_index, self._buffer)
        interpreter.invoke()
        q = int(interpreter.get_tensor(self._out_index)[0, 0])
        return min(1.0, max(0.0, (q - self._out_zero) * self._out_scale))

    def score_many(self, rows) -> list[float]:
        """Scores for many rows, in order."""
        return [self.score(row) for row in rows]

    def __repr__(self) -> str:
        return f"FraudModel({self.name} {self.version}, {self.runtime}, {self.path})"
