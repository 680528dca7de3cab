"""Scorers for best-match routing: how well each available agent suits one call.

A scorer takes the call's feature vector and the capability vectors of the
candidate agents (one row each) and returns one score per row, higher is
better. :class:`CosineScorer` is the default; :class:`LogisticScorer` is a
trained model's drop-in replacement whose weights are read from JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from engine.core.errors import ConfigError

Vector = npt.NDArray[np.float64]
Matrix = npt.NDArray[np.float64]


@runtime_checkable
class Scorer(Protocol):
    def score(self, features: Vector, capabilities: Matrix) -> Vector:
        """One score per row of ``capabilities`` (shape ``(n, d)``) for ``features``."""
        ...


class CosineScorer:
    """Cosine similarity; a zero vector (no information) scores 0."""

    def score(self, features: Vector, capabilities: Matrix) -> Vector:
        if capabilities.shape[1] != features.shape[0]:
            raise ValueError(
                f"call features have {features.shape[0]} numbers, "
                f"agent capabilities {capabilities.shape[1]}"
            )
        norms = np.linalg.norm(capabilities, axis=1) * float(np.linalg.norm(features))
        dots = capabilities @ features
        out: Vector = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
        return out


class LogisticScorer:
    """``sigmoid(bias + w_f·f + w_c·c + w_x·(f*c))`` per agent: call features ``f``,
    agent capabilities ``c`` and their element-wise product ``f*c``."""

    def __init__(
        self,
        bias: float,
        features: Vector,
        capabilities: Vector,
        interaction: Vector | None = None,
    ) -> None:
        self.bias = bias
        self.w_features = features
        self.w_capabilities = capabilities
        self.w_interaction = interaction

    def score(self, features: Vector, capabilities: Matrix) -> Vector:
        if features.shape[0] != self.w_features.shape[0]:
            raise ValueError(
                f"call features have {features.shape[0]} numbers, the model expects "
                f"{self.w_features.shape[0]}"
            )
        if capabilities.shape[1] != self.w_capabilities.shape[0]:
            raise ValueError(
                f"agent capabilities have {capabilities.shape[1]} numbers, the model expects "
                f"{self.w_capabilities.shape[0]}"
            )
        z = self.bias + float(self.w_features @ features) + capabilities @ self.w_capabilities
        if self.w_interaction is not None:
            z = z + capabilities @ (self.w_interaction * features)
        out: Vector = 1.0 / (1.0 + np.exp(-z))
        return out


def _vector(raw: dict[str, Any], key: str, problems: list[str], size: int | None) -> Vector | None:
    value = raw.get(key)
    if not isinstance(value, list) or not value:
        problems.append(f"{key}: expected a non-empty list of numbers")
        return None
    bad = [
        i
        for i, v in enumerate(value)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
    ]
    if bad:
        problems.append(f"{key}[{bad[0]}]: expected a finite number (got {value[bad[0]]!r})")
        return None
    if size is not None and len(value) != size:
        problems.append(f"{key}: expected {size} numbers, one per call feature (got {len(value)})")
        return None
    return np.asarray(value, dtype=np.float64)


def logistic_from_json(text: str, path: str = "<string>") -> LogisticScorer:
    """Parse ``{"bias": b, "features": [...], "capabilities": [...], "interaction": [...]}``.

    ``interaction`` is optional; when given it has one weight per feature and the
    capability vectors must be as long as the feature vectors. Errors raise
    :class:`ConfigError` naming ``path`` and the key.
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(path, [f"not valid JSON: {err}"]) from err
    if not isinstance(raw, dict):
        raise ConfigError(path, ["(top level): expected an object with bias, features, ..."])
    problems: list[str] = []
    unknown = sorted(set(raw) - {"bias", "features", "capabilities", "interaction"})
    problems += [
        f"{k}: unknown key (expected bias, features, capabilities, interaction)" for k in unknown
    ]
    bias = raw.get("bias")
    if isinstance(bias, bool) or not isinstance(bias, int | float) or not math.isfinite(bias):
        problems.append(f"bias: expected a finite number (got {bias!r})")
    w_f = _vector(raw, "features", problems, None)
    w_c = _vector(raw, "capabilities", problems, None)
    w_x = None
    if "interaction" in raw:
        w_x = _vector(raw, "interaction", problems, None if w_f is None else len(w_f))
        if w_x is not None and w_c is not None and len(w_c) != len(w_x):
            problems.append(
                f"interaction: needs capabilities as long as features ({len(w_x)}), "
                f"got {len(w_c)} capability weights"
            )
    if problems or w_f is None or w_c is None or isinstance(bias, bool):
        raise ConfigError(path, problems)
    assert isinstance(bias, int | float)
    return LogisticScorer(float(bias), w_f, w_c, w_x)


def load_logistic_scorer(path: str | Path) -> LogisticScorer:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(str(p), [f"cannot read file: {err.strerror}"]) from err
    return logistic_from_json(text, str(p))
