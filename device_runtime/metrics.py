"""Accuracy, macro-F1 and the confusion matrix in numpy (shared by host and device)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> np.ndarray:
    """Rows: true label, columns: predicted label."""
    matrix = np.zeros((num_labels, num_labels), np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def classification_metrics(labels, predictions, num_labels: int) -> dict:
    """-> {accuracy, macro_f1, confusion, n}; F1 of a label never predicted nor present counts 0."""
    matrix = confusion_matrix(labels, predictions, num_labels)
    true_pos = np.diag(matrix).astype(float)
    predicted, actual = matrix.sum(0), matrix.sum(1)
    denom = predicted + actual
    f1 = np.divide(2 * true_pos, denom, out=np.zeros_like(true_pos), where=denom > 0)
    total = matrix.sum()
    return {"accuracy": float(true_pos.sum() / total) if total else 0.0, "macro_f1": float(f1.mean()),
            "confusion": matrix.tolist(), "n": int(total)}
