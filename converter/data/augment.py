"""Token-level data augmentation for distillation: perturbed copies of the training sentences.

The teacher labels each copy with its own logits, so the student sees the teacher's function
on more points than the 3.9k sentences hold (TinyBERT-style augmentation without an MLM:
wordpieces are masked or dropped at random). [CLS] and [SEP] stay; padding follows the new length."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from converter.errors import ConfigError


def augment_ids(input_ids: np.ndarray, attention_mask: np.ndarray, copies: int, mask_prob: float,
                drop_prob: float, mask_id: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (ids, mask, source rows): `copies` perturbed versions of every row, copy-major.

    Each wordpiece between [CLS] and [SEP] is replaced by mask_id with probability mask_prob,
    dropped with probability drop_prob, else kept."""
    if mask_prob < 0 or drop_prob < 0 or mask_prob + drop_prob > 1:
        raise ConfigError(f"augmentation probabilities mask {mask_prob} + drop {drop_prob} must lie in [0, 1]")
    rng = np.random.default_rng(seed)
    n, seq = input_ids.shape
    out_ids = np.zeros((copies * n, seq), input_ids.dtype)
    out_mask = np.zeros((copies * n, seq), attention_mask.dtype)
    for c in range(copies):
        for r in range(n):
            tokens = input_ids[r, attention_mask[r] == 1]
            body = tokens[1:-1]
            draw = rng.random(len(body))
            dropped = (draw >= mask_prob) & (draw < mask_prob + drop_prob)
            body = np.where(draw < mask_prob, mask_id, body)[~dropped]
            row = np.concatenate([tokens[:1], body, tokens[-1:]])
            out_ids[c * n + r, :len(row)] = row
            out_mask[c * n + r, :len(row)] = 1
    return out_ids, out_mask, np.tile(np.arange(n), copies)


def token_id(vocab: Path, token: str = "[MASK]") -> int:
    """The id of `token` in a WordPiece vocab.txt (its line number)."""
    for i, line in enumerate(Path(vocab).read_text(encoding="utf-8").splitlines()):
        if line == token:
            return i
    raise ConfigError(f"{vocab}: no line holds {token}")


def unk_copy(inputs: list[np.ndarray], labels: np.ndarray, unk_id: int, prob: float, seed: int,
             rare_alpha: float = 0.0):
    """-> (inputs, labels, source rows): the training rows plus one copy whose wordpieces (not
    [CLS], [SEP] or padding) become `unk_id` with probability `prob`. Each row's source row is the
    original sentence the teacher reads (distill's teacher_rows), so the copy learns to answer as
    the teacher does despite the ids that embedding compaction sends to [UNK].

    rare_alpha > 0 sends rare wordpieces to [UNK] more often, as the ids a test sentence loses are
    rare ones (word dropout, Kiperwasser & Goldberg 2016): a wordpiece seen c times in these rows
    is also hit with probability rare_alpha / (rare_alpha + c), on top of `prob`."""
    if not 0 <= prob <= 1:
        raise ConfigError(f"unk copy probability {prob} must lie in [0, 1]")
    if rare_alpha < 0:
        raise ConfigError(f"unk copy rare_alpha {rare_alpha} must be >= 0")
    ids, mask = inputs
    followed = np.concatenate([mask[:, 1:], np.zeros_like(mask[:, :1])], axis=1) == 1  # not the last real token ([SEP])
    body = (mask == 1) & (np.arange(ids.shape[1])[None, :] > 0) & followed
    rate = np.full(ids.shape, float(prob))
    if rare_alpha:
        counts = np.bincount(ids[body], minlength=int(ids.max()) + 1)
        rare = rare_alpha / (rare_alpha + np.maximum(counts[ids], 1))
        rate = 1 - (1 - rate) * (1 - rare)
    hit = body & (np.random.default_rng(seed).random(ids.shape) < rate)
    return ([np.concatenate([ids, np.where(hit, unk_id, ids)]), np.concatenate([mask, mask])],
            np.concatenate([labels, labels]), np.tile(np.arange(len(ids)), 2))
