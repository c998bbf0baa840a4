"""Metrics that work offline: accuracy, macro-F1 and macro-recall (scikit-learn), perplexity."""

from __future__ import annotations

import math

import numpy as np


def classification_metrics(eval_pred) -> dict[str, float]:
    """``compute_metrics`` for ``Trainer``: accuracy, f1 (macro), recall (macro)."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    preds = np.asarray(logits).argmax(-1)
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1": float(f1_score(labels, preds, average="macro")),
        "recall": float(recall_score(labels, preds, average="macro")),
    }


def perplexity_from_loss(loss: float) -> float:
    return float(math.exp(min(loss, 50.0)))
