"""`make mobile-check`: MediaPipe Tasks' TextClassifier on the bundle's MediaPipe file over a labelled split,
against device_runtime on the same bundle model, with the reason for every label they disagree on.

    python -m benchmarks.mobile_check --bundle dist [--model NAME] [--data ../shared/data/fpb/test.tsv]
Exit code 0 only when MediaPipe's accuracy is within 0.5 points of the model's manifest test accuracy and
at least 98% of its labels equal device_runtime's."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np

from device_runtime.bundle import Bundle, softmax
from device_runtime.classifier import Classifier
from device_runtime.format import ATTENTION_MASK, INPUT_IDS, MOBILE_INPUT_NAMES, Key
from device_runtime.interpreter import TFLiteModel
from device_runtime.metrics import classification_metrics
from device_runtime.mobile import mobile_entries, mobile_problems
from device_runtime.platforms import describe, platform_record
from device_runtime.tables import read_table
from device_runtime.tokenizer import WordPieceTokenizer

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "fpb"
MAX_ACCURACY_GAP = 0.005  # MediaPipe's test accuracy against the source model's manifest figure
MIN_AGREEMENT = 0.98  # share of labels equal to device_runtime's
WARMUP = 10


def mediapipe_scores(path: Path, texts: list[str]) -> tuple[np.ndarray, list[int]]:
    """MediaPipe's TextClassifier on each text -> ((n, labels) float32 scores in label order, ns per call)."""
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from mediapipe.tasks.python.text import text_classifier

    options = text_classifier.TextClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)))
    rows, times = [], []
    with text_classifier.TextClassifier.create_from_options(options) as classifier:
        for text in texts[:WARMUP]:
            classifier.classify(text)
        for text in texts:
            start = time.perf_counter_ns()
            categories = classifier.classify(text).classifications[0].categories
            times.append(time.perf_counter_ns() - start)
            rows.append([c.score for c in sorted(categories, key=lambda c: c.index)])
    return np.array(rows, np.float32), times


def mediapipe_style(text: str) -> str:
    """What MediaPipe's BERT preprocessing does before WordPiece: lower-case ASCII only (accents, and the
    case of other letters, stay)."""
    return "".join(ch.lower() if ch.isascii() else ch for ch in text)


def strip_accents_and_lower(text: str) -> str:
    """The cure: the text as an uncased BERT tokenizer normalizes it (NFD, drop combining marks, lower-case)."""
    return "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn").lower()


def mobile_probabilities(model: TFLiteModel, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    feed = dict(zip(MOBILE_INPUT_NAMES, (ids, mask, np.zeros_like(ids))))
    return model.predict(feed)[0]


def litert_runs(bundle: Bundle, entry: dict, mobile: Path, texts: list[str]) -> dict:
    """The mobile file through LiteRT (1 thread) on our token ids and on MediaPipe-style ones, the source file's
    softmax(logits / T), and the mobile file's timings (ns, tokenization included and not)."""
    seq_len = int(entry.get(Key.SEQ_LEN, bundle.seq_len))
    _, loaded = bundle.load(entry[Key.NAME], num_threads=1)
    source = TFLiteModel(bundle.file(entry[Key.FILE]), seq_len=seq_len, num_threads=1)
    id_map = getattr(loaded, "id_map", None)
    model = TFLiteModel(mobile, num_threads=1)
    styled = WordPieceTokenizer(bundle.tokenizer.vocab, lowercase=False)
    out = {"ours": [], "styled": [], "source": [], "same_ids": [], "e2e": [], "model": []}
    warmup = texts[:WARMUP]
    for i, text in enumerate([*warmup, *texts]):
        start = time.perf_counter_ns()
        enc = bundle.tokenizer.encode(text, seq_len)
        invoke = time.perf_counter_ns()
        probs = mobile_probabilities(model, enc[INPUT_IDS], enc[ATTENTION_MASK])
        end = time.perf_counter_ns()
        if i < len(warmup):
            continue
        alt = styled.encode(mediapipe_style(text), seq_len)
        ids = enc[INPUT_IDS] if id_map is None else id_map[enc[INPUT_IDS]]
        out["ours"].append(probs)
        out["styled"].append(mobile_probabilities(model, alt[INPUT_IDS], alt[ATTENTION_MASK]))
        out["source"].append(softmax(source.predict({INPUT_IDS: ids, ATTENTION_MASK: enc[ATTENTION_MASK]})[0]
                                     / float(entry.get(Key.TEMPERATURE, 1.0))))
        out["same_ids"].append(bool(np.array_equal(alt[INPUT_IDS], enc[INPUT_IDS])))
        out["e2e"].append(end - start)
        out["model"].append(end - invoke)
    return {key: np.array(value) for key, value in out.items()}


def reason(text: str, same_ids: bool, styled_matches: bool, mp: np.ndarray, ours: np.ndarray, bucket: str) -> str:
    """Why MediaPipe's label differs from device_runtime's on one sentence."""
    if not same_ids:
        foreign = sorted({ch for ch in text if not ch.isascii()})
        check = "these ids reproduce MediaPipe's scores" if styled_matches else "MediaPipe's own ids differ again"
        return f"tokenization: non-ASCII {''.join(foreign)!r} is lower-cased / stripped by us, not by MediaPipe ({check})"
    margin = lambda p: float(np.sort(p)[-1] - np.sort(p)[-2])  # noqa: E731
    return (f"same token ids; top-2 margin {margin(mp):.3f} (MediaPipe) vs {margin(ours):.3f} (device_runtime{bucket})")


def p50_ms(times) -> float:
    return statistics.median(times) / 1e6


def run(bundle: Bundle, entry: dict, mobile: Path, texts: list[str]) -> dict:
    """MediaPipe, LiteRT and device_runtime on `texts`: labels (indices), probabilities and timings."""
    mp, mp_times = mediapipe_scores(mobile, texts)
    litert = litert_runs(bundle, entry, mobile, texts)
    classifier = Classifier.from_bundle(bundle.folder, entry[Key.NAME], num_threads=1)
    device = np.array([list(p.probabilities.values()) for p in classifier.predict(texts)])
    return {"mp": mp, "mp_times": mp_times, "litert": litert, "device": device}


def _bucket_note(bundle: Bundle, entry: dict, text: str) -> str:
    if not entry.get(Key.BUCKETS):
        return ""
    tokens = int(bundle.tokenizer.encode(text, bundle.seq_len_of(entry))[ATTENTION_MASK].sum())
    bucket = min(b for b in sorted(entry[Key.BUCKETS]) if b >= tokens)
    return f", its {bucket}-token bucket file" if bucket != int(entry.get(Key.SEQ_LEN, bundle.seq_len)) else ""


def report(bundle: Bundle, entry: dict, mobile: dict, texts: list[str], labels, agreement, result: dict) -> bool:
    """Print the figures and every disagreement; True when the acceptance thresholds hold."""
    names, n = bundle.labels, len(texts)
    mp, device, litert = result["mp"], result["device"], result["litert"]
    test = classification_metrics(labels, mp.argmax(1), len(names))
    reference = ((entry.get(Key.METRICS) or {}).get("test") or {}).get("accuracy")
    print(f"MediaPipe TextClassifier on {mobile[Key.FILE]} ({mobile[Key.BYTES] / 1e6:.2f} MB, from {entry[Key.NAME]}), "
          f"n={n}: accuracy {test['accuracy']:.4f}  macro-F1 {test['macro_f1']:.4f}  "
          f"(manifest test accuracy of {entry[Key.NAME]}: {reference if reference is None else f'{reference:.4f}'})")
    if agreement is not None:
        keep = agreement == 100
        allagree = classification_metrics(labels[keep], mp.argmax(1)[keep], len(names))
        print(f"AllAgree subset: n={allagree['n']}  accuracy {allagree['accuracy']:.4f}")
    same_source = int((litert["ours"].argmax(1) == litert["source"].argmax(1)).sum())
    print(f"LiteRT, mobile file vs source file on device_runtime's ids: {same_source}/{n} identical labels, "
          f"max |probability difference| {np.abs(litert['ours'] - litert['source']).max():.1e}")
    styled = np.abs(litert["styled"] - mp).max(1) <= 1e-6
    print(f"MediaPipe-style ids (ASCII-only lower-casing) through LiteRT reproduce MediaPipe's scores on "
          f"{int(styled.sum())}/{n} sentences; they equal device_runtime's ids on {int(litert['same_ids'].sum())}/{n}")
    differ = np.flatnonzero(mp.argmax(1) != device.argmax(1))
    print(f"labels identical to device_runtime's ({entry[Key.NAME]}): {n - len(differ)}/{n}")
    for i in differ:
        why = reason(texts[i], litert["same_ids"][i], styled[i], mp[i], device[i], _bucket_note(bundle, entry, texts[i]))
        print(f"  [{i}] MediaPipe {names[mp[i].argmax()]}, device_runtime {names[device[i].argmax()]}, "
              f"true {names[labels[i]]}: {why}\n       {texts[i][:100]!r}")
    print(f"p50 per sentence: MediaPipe classify() {p50_ms(result['mp_times']):.2f} ms (its tokenizer included; its "
          f"default threads, 1 on desktop Linux); LiteRT on the mobile file {p50_ms(litert['e2e']):.2f} ms with "
          f"device_runtime's tokenizer, "
          f"{p50_ms(litert['model']):.2f} ms model only (1 thread); on {describe(platform_record())}")
    failures = []
    if reference is not None and abs(test["accuracy"] - reference) > MAX_ACCURACY_GAP:
        failures.append(f"accuracy {test['accuracy']:.4f} is more than {MAX_ACCURACY_GAP * 100:g} points from {reference:.4f}")
    if n - len(differ) < MIN_AGREEMENT * n:
        failures.append(f"only {n - len(differ)}/{n} labels equal device_runtime's (at least {MIN_AGREEMENT:.0%} needed)")
    print("mobile-check:", "PASS" if not failures else "FAIL: " + "; ".join(failures))
    return not failures


def cure(bundle: Bundle, entry: dict, mobile: Path, path: Path) -> None:
    """MediaPipe on `path` as given and with strip_accents_and_lower applied first: accuracy and agreement."""
    texts, labels, _ = read_table(path, bundle.labels)
    device = [bundle.labels.index(p.label) for p in Classifier.from_bundle(bundle.folder, entry[Key.NAME]).predict(texts)]
    rows = {}
    for name, given in (("as given", texts), ("cured", [strip_accents_and_lower(t) for t in texts])):
        predicted = mediapipe_scores(mobile, given)[0].argmax(1)
        rows[name] = (classification_metrics(labels, predicted, len(bundle.labels))["accuracy"],
                      int((predicted == np.array(device)).sum()))
    (raw_acc, raw_same), (cured_acc, cured_same) = rows["as given"], rows["cured"]
    print(f"cure on {path.name} (strip accents + lower-case before classify()): accuracy {raw_acc:.4f} -> "
          f"{cured_acc:.4f}, labels identical to device_runtime {raw_same} -> {cured_same} of {len(texts)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="dist")
    parser.add_argument("--model", help="bundle model (default: the one classify uses)")
    parser.add_argument("--data", default=str(DATA / "test.tsv"))
    parser.add_argument("--cure-data", default=str(DATA / "dev.tsv"), help="split the tokenizer cure is measured on")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # mediapipe imports TensorFlow when it is installed
    bundle = Bundle(args.bundle)
    entry = bundle.entry(args.model)
    mobile = [m for m in mobile_entries(bundle.manifest) if m[Key.SOURCE_MODEL] == entry[Key.NAME]]
    if not mobile:
        sys.exit(f"error: {bundle.folder} has no MediaPipe file of {entry[Key.NAME]}; create it with: "
                 f"python -m converter mobile --bundle {bundle.folder} --model {entry[Key.NAME]}")
    problems = mobile_problems(bundle, mobile[0])
    if problems:
        sys.exit(f"error: {problems[0]}")
    path = bundle.file(mobile[0][Key.FILE])
    texts, labels, agreement = read_table(Path(args.data), bundle.labels)
    ok = report(bundle, entry, mobile[0], texts, labels, agreement, run(bundle, entry, path, texts))
    for split in (Path(args.cure_data), Path(args.data)):  # measured on dev; test only for information
        cure(bundle, entry, path, split)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
