"""Distillation augmentation: perturbed copies keep [CLS]/[SEP], mask or drop only wordpieces,
re-pad correctly, and are reproducible; the teacher labels every copy."""

from __future__ import annotations

import numpy as np
import pytest

from converter.data.augment import augment_ids, token_id, unk_copy

CLS, SEP, MASK = 101, 102, 103
IDS = np.array([[CLS, 7, 8, 9, SEP, 0, 0], [CLS, 5, SEP, 0, 0, 0, 0]], np.int32)
ATTN = (IDS != 0).astype(np.int32)


def test_mask_everything_keeps_length_and_specials():
    ids, mask, rows = augment_ids(IDS, ATTN, copies=2, mask_prob=1.0, drop_prob=0.0, mask_id=MASK, seed=0)
    expected = np.array([[CLS, MASK, MASK, MASK, SEP, 0, 0], [CLS, MASK, SEP, 0, 0, 0, 0]], np.int32)
    np.testing.assert_array_equal(ids, np.concatenate([expected, expected]))
    np.testing.assert_array_equal(mask, np.concatenate([ATTN, ATTN]))
    assert rows.tolist() == [0, 1, 0, 1]


def test_drop_everything_leaves_cls_sep_and_padding():
    ids, mask, _ = augment_ids(IDS, ATTN, copies=1, mask_prob=0.0, drop_prob=1.0, mask_id=MASK, seed=0)
    np.testing.assert_array_equal(ids, [[CLS, SEP, 0, 0, 0, 0, 0]] * 2)
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0, 0, 0, 0]] * 2)


def test_mixed_perturbation_is_seeded_and_consistent():
    long_ids = np.array([[CLS, *range(1000, 1040), SEP] + [0] * 8], np.int32)
    attn = (long_ids != 0).astype(np.int32)
    a = augment_ids(long_ids, attn, copies=3, mask_prob=0.2, drop_prob=0.2, mask_id=MASK, seed=5)
    b = augment_ids(long_ids, attn, copies=3, mask_prob=0.2, drop_prob=0.2, mask_id=MASK, seed=5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    ids, mask, _ = a
    for row, m in zip(ids, mask):
        real = row[m == 1]
        assert real[0] == CLS and real[-1] == SEP and (row[m == 0] == 0).all()
        body = real[1:-1]
        kept = body[body != MASK]
        assert (np.diff(kept) > 0).all()  # survivors keep their order, nothing invented
        assert 0 < (body == MASK).sum() and len(body) < 40  # something masked, something dropped


def test_bad_probabilities_and_missing_token_are_named(tmp_path):
    with pytest.raises(ValueError, match="mask 0.7 \\+ drop 0.5"):
        augment_ids(IDS, ATTN, 1, 0.7, 0.5, MASK, 0)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[MASK]\n")
    assert token_id(vocab) == 2
    with pytest.raises(ValueError, match="vocab.txt: no line holds \\[CLS\\]"):
        token_id(vocab, "[CLS]")


UNK = 100


def test_unk_copy_sends_only_wordpieces_to_unk_and_the_teacher_reads_the_originals():
    labels = np.array([2, 0])
    (ids, mask), out_labels, rows = unk_copy([IDS, ATTN], labels, UNK, prob=1.0, seed=0)
    expected = np.array([[CLS, UNK, UNK, UNK, SEP, 0, 0], [CLS, UNK, SEP, 0, 0, 0, 0]], np.int32)
    np.testing.assert_array_equal(ids, np.concatenate([IDS, expected]))
    np.testing.assert_array_equal(mask, np.concatenate([ATTN, ATTN]))
    assert out_labels.tolist() == [2, 0, 2, 0]
    assert rows.tolist() == [0, 1, 0, 1]  # every copy is labelled by the teacher from its original sentence
    full = np.array([[CLS, 5, 6, SEP]], np.int32)  # a sentence filling every position keeps its last [SEP]
    assert unk_copy([full, np.ones_like(full)], labels[:1], UNK, 1.0, 0)[0][0][1].tolist() == [CLS, UNK, UNK, SEP]


def test_unk_copy_is_seeded_and_follows_its_rate():
    ids = np.array([[CLS, *range(1000, 1400), SEP]], np.int32)
    inputs = [ids, np.ones_like(ids)]
    a = unk_copy(inputs, np.array([1]), UNK, prob=0.25, seed=3)[0][0]
    b = unk_copy(inputs, np.array([1]), UNK, prob=0.25, seed=3)[0][0]
    np.testing.assert_array_equal(a, b)
    hit = a[1] == UNK
    assert 0.18 < hit.mean() < 0.32 and (a[1][~hit] == ids[0][~hit]).all()
    np.testing.assert_array_equal(unk_copy(inputs, np.array([1]), UNK, 0.0, 3)[0][0][1], ids[0])
    with pytest.raises(ValueError, match="probability 1.5"):
        unk_copy(inputs, np.array([1]), UNK, 1.5, 0)


def test_unk_copy_rare_alpha_hits_rare_wordpieces_at_alpha_over_alpha_plus_count():
    # 400 sentences: 5 (seen 400 times) then a wordpiece seen once; alpha 1 -> 1/2 for a singleton, 1/401 for 5
    ids = np.array([[CLS, 5, 1000 + r, SEP] for r in range(400)], np.int32)
    inputs = [ids, np.ones_like(ids)]
    copy = unk_copy(inputs, np.ones(400, int), UNK, prob=0.0, seed=1, rare_alpha=1.0)[0][0][400:]
    singleton_rate, frequent_rate = (copy[:, 2] == UNK).mean(), (copy[:, 1] == UNK).mean()
    assert 0.42 < singleton_rate < 0.58 and frequent_rate < 0.02
    assert (copy[:, [0, 3]] == [CLS, SEP]).all()
    # on top of a uniform rate: 1 - (1 - 0.5)(1 - 1/2) = 0.75 for a singleton
    both = unk_copy(inputs, np.ones(400, int), UNK, prob=0.5, seed=1, rare_alpha=1.0)[0][0][400:]
    assert 0.67 < (both[:, 2] == UNK).mean() < 0.83 and 0.42 < (both[:, 1] == UNK).mean() < 0.58
    with pytest.raises(ValueError, match="rare_alpha -1"):
        unk_copy(inputs, np.ones(400, int), UNK, 0.0, 0, rare_alpha=-1.0)


def test_slim_recovery_adds_the_unk_copy_when_either_rate_asks_for_it():
    from converter.config import SlimConfig
    from converter.jobs.slim import recovery_rows
    ids = np.array([[CLS, 5, 1000, SEP], [CLS, 5, 1001, SEP]], np.int32)
    inputs, labels = [ids, np.ones_like(ids)], np.array([0, 2])
    same = recovery_rows(SlimConfig(unk_copy_prob=0.0, unk_rare_alpha=0.0), inputs, labels, UNK, 0)
    assert same[0][0] is ids and same[2] is None
    for slim in (SlimConfig(unk_copy_prob=0.0, unk_rare_alpha=1.0), SlimConfig(unk_copy_prob=0.05, unk_rare_alpha=0.0)):
        (out, _), out_labels, rows = recovery_rows(slim, inputs, labels, UNK, 0)
        assert len(out) == 4 and out_labels.tolist() == [0, 2, 0, 2] and rows.tolist() == [0, 1, 0, 1]
