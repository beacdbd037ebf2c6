"""`python -m device_runtime`: tokenize, classify, eval, verify, bench. Standard library + numpy only."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from device_runtime.bundle import Bundle
from device_runtime.classifier import Classifier
from device_runtime.errors import BundleInputError
from device_runtime.format import ATTENTION_MASK, INPUT_IDS, MODEL_CARD, Key
from device_runtime.metrics import classification_metrics
from device_runtime.mobile import mobile_entries
from device_runtime.tables import read_table
from device_runtime.tokenizer import WordPieceTokenizer


def iter_stdin_lines():
    """One text per stdin line, yielded as each line arrives; undecodable bytes become U+FFFD and are reported on stderr."""
    number = 0
    for chunk in sys.stdin.buffer:  # split at \n as lines arrive; splitlines() also splits a lone \r, as before
        for raw in chunk.splitlines():
            number += 1
            text = raw.decode("utf-8", errors="replace")
            if "\ufffd" in text and "\ufffd".encode() not in raw:
                print(f"warning: stdin line {number}: undecodable bytes replaced", file=sys.stderr)
            yield text


def _texts(args):
    return list(args.text) if args.text else iter_stdin_lines()


def cmd_tokenize(args) -> int:
    tokenizer = WordPieceTokenizer(args.vocab, lowercase=not args.cased)
    for text in _texts(args):
        enc = tokenizer.encode(text, args.seq_len)
        ids, mask = enc[INPUT_IDS], enc[ATTENTION_MASK]
        if args.seq_len is not None:
            ids, mask = ids[0].tolist(), mask[0].tolist()
        out = {INPUT_IDS: ids, ATTENTION_MASK: mask}
        if enc["truncated"]:
            out["truncated"] = True
        print(json.dumps(out))
    return 0


def cmd_classify(args) -> int:
    classifier = Classifier.from_bundle(args.bundle, args.model, args.threads)
    labels, seq_len = classifier.labels, classifier.seq_len
    if not args.json:
        print(f"model {classifier.name}  ({classifier.quantization}, seq_len {seq_len})")
        print(f"{'label':<9} " + " ".join(f"{name[:8]:>8}" for name in labels) + "  text")
    for text in _texts(args):  # answered one by one, so a pipe gets each line's answer as it is read
        result = classifier.predict(text)
        if args.json:
            print(json.dumps({"text": text, "label": result.label, "probabilities": result.probabilities,
                              "truncated": result.truncated, "model": classifier.name}, ensure_ascii=False))
        else:
            note = f"  [truncated to {seq_len} tokens]" if result.truncated else ""
            shown = text if len(text) <= 60 else text[:57] + "..."
            print(f"{result.label:<9} " + " ".join(f"{v:>8.3f}" for v in result.probabilities.values())
                  + f"  {shown}{note}")
        sys.stdout.flush()
    return 0


def cmd_eval(args) -> int:
    classifier = Classifier.from_bundle(args.bundle, args.model, args.threads)
    names = classifier.labels
    texts, labels, agreement = read_table(args.data, names)
    predictions = np.array([names.index(p.label) for p in classifier.predict(texts)], np.int64)
    result = {"model": classifier.name, "data": str(args.data),
              "test": classification_metrics(labels, predictions, len(names))}
    if agreement is not None:
        keep = agreement == 100
        result["test_allagree"] = classification_metrics(labels[keep], predictions[keep], len(names))
    if args.json:
        print(json.dumps(result))
        return 0
    test = result["test"]
    print(f"{classifier.name} on {args.data}: n={test['n']}  accuracy {test['accuracy']:.4f}  macro-F1 {test['macro_f1']:.4f}")
    if "test_allagree" in result:
        agree = result["test_allagree"]
        print(f"AllAgree subset: n={agree['n']}  accuracy {agree['accuracy']:.4f}  macro-F1 {agree['macro_f1']:.4f}")
    print("confusion (rows: true, columns: predicted)")
    print(" " * 10 + " ".join(f"{name[:8]:>8}" for name in names))
    for name, row in zip(names, test["confusion"]):
        print(f"{name[:9]:<10}" + " ".join(f"{v:>8d}" for v in row))
    return 0


def cmd_verify(args) -> int:
    bundle = Bundle(args.bundle)
    problems = bundle.verify()
    mobile = mobile_entries(bundle.manifest)
    for entry in bundle.models + mobile:
        if not any(p.startswith(entry[Key.NAME] + ":") for p in problems):
            source = f"  MediaPipe, from {entry[Key.SOURCE_MODEL]}" if entry in mobile else ""
            print(f"ok  {entry[Key.NAME]:<28} {entry[Key.BYTES] / 1e6:7.2f} MB  sha256 {entry[Key.SHA256][:12]}{source}")
    if not any(p.startswith(MODEL_CARD + ":") for p in problems):
        print(f"ok  {MODEL_CARD} matches the manifest")
    for problem in problems:
        print(f"BAD {problem}")
    bad = {p.split(":")[0] for p in problems} & {entry[Key.NAME] for entry in bundle.models}
    print(f"{len(bundle.models) - len(bad)}/{len(bundle.models)} models verified")
    if mobile:
        bad = {p.split(":")[0] for p in problems} & {entry[Key.NAME] for entry in mobile}
        print(f"{len(mobile) - len(bad)}/{len(mobile)} mobile files verified")
    if problems:  # the report above stays on stdout; stderr gets the one error line every command gives
        print(f"error: {bundle.folder}: {len(problems)} problem(s), first: {problems[0]}", file=sys.stderr)
    return 1 if problems else 0


def cmd_pack(args) -> int:
    from device_runtime.pack import pack

    out = pack(Path(args.bundle), args.model, Path(args.out))
    files = sorted(p for p in out.iterdir() if p.is_file())
    for path in files:
        print(f"{path.stat().st_size:>10,d}  {path.name}")
    print(f"{sum(p.stat().st_size for p in files):>10,d}  bytes in {out} ({len(files)} files)")
    return cmd_verify(argparse.Namespace(bundle=str(out)))


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def _thread_list(text: str) -> list[int]:
    return [_count(1)(part) for part in text.split(",") if part.strip()]


def cmd_bench(args) -> int:
    from device_runtime.bench import format_rows, run_bench

    bundle = Bundle(args.bundle)
    names = [m[Key.NAME] for m in bundle.models] if args.model == "all" else [bundle.entry(args.model)[Key.NAME]]
    try:
        payload = run_bench(Path(args.bundle), names, args.threads, args.runs, args.warmup,
                            Path(args.json) if args.json else None, Path(args.data) if args.data else None)
    except KeyboardInterrupt:
        return 130
    print(format_rows(payload["results"]))
    return 0 if all(r.get("status") == "ok" for r in payload["results"]) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m device_runtime", description="Financial sentiment on the device.")
    sub = parser.add_subparsers(dest="command", required=True)
    tok = sub.add_parser("tokenize", help="print input_ids / attention_mask as JSON lines")
    tok.add_argument("--vocab", required=True)
    tok.add_argument("--seq-len", type=int)
    tok.add_argument("--cased", action="store_true", help="keep case and accents (cased vocab)")
    tok.add_argument("text", nargs="*")
    tok.set_defaults(func=cmd_tokenize)
    for name, func, help_text in (("classify", cmd_classify, "label and probabilities per text"),
                                  ("eval", cmd_eval, "accuracy, macro-F1, confusion on a labelled table")):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--bundle", required=True)
        cmd.add_argument("--model", help="manifest model name (default: the bundle's default_model)")
        cmd.add_argument("--threads", type=int)
        cmd.add_argument("--json", action="store_true")
        cmd.set_defaults(func=func)
    sub.choices["classify"].add_argument("text", nargs="*")
    sub.choices["eval"].add_argument("--data", required=True)
    ver = sub.add_parser("verify", help="check files, sizes, hashes and input shapes")
    ver.add_argument("--bundle", required=True)
    ver.set_defaults(func=cmd_verify)
    pack = sub.add_parser("pack", help="copy one model, its extra files, the vocab and a one-model manifest")
    pack.add_argument("--bundle", required=True)
    pack.add_argument("--model", help="manifest model name (default: the bundle's default_model)")
    pack.add_argument("--out", required=True, help="new folder (must not exist)")
    pack.set_defaults(func=cmd_pack)
    bench = sub.add_parser("bench", help="latency, throughput and memory per model, each in a fresh process")
    bench.add_argument("--bundle", required=True)
    bench.add_argument("--model", help="a manifest model name, or all (default: the bundle's default_model)")
    bench.add_argument("--threads", type=_thread_list, default=[1], help="comma-separated, e.g. 1,2,4")
    bench.add_argument("--runs", type=_count(1), default=100)
    bench.add_argument("--warmup", type=_count(0), default=10)
    bench.add_argument("--data", help="text,label table whose sentences drive the end-to-end timing")
    bench.add_argument("--json", help="write results here (rewritten after every row)")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BundleInputError as err:  # what the user handed us; anything else is a bug and keeps its traceback
        print(f"error: {err}", file=sys.stderr)
        return 1
