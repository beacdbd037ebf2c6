"""Confidence calibration in numpy: one temperature per model fitted on held-out logits, and the
expected calibration error (ECE) that shows whether it helped. Dividing logits by T > 0 keeps the argmax."""

from __future__ import annotations

import numpy as np

ECE_BINS = 15  # equal-width confidence bins, as in Guo et al. (2017)
LOG_T_RANGE = (-3.0, 3.0)  # temperatures from 0.05 to 20


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, np.float64) / temperature
    shifted = np.exp(scaled - scaled.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / temperature)."""
    scaled = np.asarray(logits, np.float64) / temperature
    top = scaled.max(-1, keepdims=True)
    log_norm = (top + np.log(np.exp(scaled - top).sum(-1, keepdims=True)))[:, 0]
    return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, iterations: int = 60) -> float:
    """The T minimizing the NLL of `labels`: golden-section search over log T (the NLL is convex in 1/T).

    Args:
        logits: (n, num_labels) raw model outputs.
        labels: (n,) true label indices in the logits' column order.
    """
    labels = np.asarray(labels, np.int64)
    low, high = LOG_T_RANGE
    ratio = (np.sqrt(5.0) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(logits, labels, np.exp(a)), nll(logits, labels, np.exp(b))
    for _ in range(iterations):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(logits, labels, np.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(logits, labels, np.exp(b))
    return float(np.exp((low + high) / 2))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """sum_b |B_b|/n * |accuracy(B_b) - mean confidence(B_b)| over equal-width bins of the top probability."""
    rows = reliability(probabilities, labels, bins)
    n = sum(row["count"] for row in rows)
    return float(sum(row["count"] / n * abs(row["accuracy"] - row["confidence"]) for row in rows))


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per non-empty bin: {low, high, count, accuracy, confidence} (the reliability diagram's bars)."""
    probabilities, labels = np.asarray(probabilities, np.float64), np.asarray(labels)
    confidence = probabilities.max(-1)
    correct = probabilities.argmax(-1) == labels
    # Bin b holds confidences in (b/bins, (b+1)/bins]; a top probability is never below 1/num_labels.
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    return [{"low": b / bins, "high": (b + 1) / bins, "count": int((which == b).sum()),
             "accuracy": float(correct[which == b].mean()), "confidence": float(confidence[which == b].mean())}
            for b in range(bins) if (which == b).any()]
