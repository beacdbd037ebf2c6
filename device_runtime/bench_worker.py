"""One benchmark measurement in its own process; prints one JSON line. Used by `bench`."""

from __future__ import annotations

import argparse
import json
import sys
import time

from device_runtime.bench import SAMPLE_SENTENCES, peak_memory_mb, summarize, throughput
from device_runtime.bundle import Bundle
from device_runtime.format import Key
from device_runtime.tables import read_table


def measure(bundle: Bundle, name: str, threads: int, runs: int, warmup: int, texts) -> dict:
    entry = bundle.entry(name)
    clock = time.perf_counter_ns
    start = clock()
    tokenizer = bundle.tokenizer
    vocab_ns = clock() - start
    start = clock()
    _, model = bundle.load(name, threads)
    init_ns = clock() - start
    seq_len = bundle.seq_len_of(entry)
    encoded = [tokenizer.encode(text, seq_len) for text in texts]
    start = clock()
    model.predict(encoded[0])
    first_ns = clock() - start
    for i in range(warmup):
        model.predict(encoded[i % len(encoded)])
    model_ns, e2e_ns, tokenize_ns = [], [], []
    for i in range(runs):
        start = clock()
        model.predict(encoded[i % len(encoded)])
        model_ns.append(clock() - start)
    for i in range(runs):
        start = clock()
        enc = tokenizer.encode(texts[i % len(texts)], seq_len)
        middle = clock()
        model.predict(enc)
        end = clock()
        tokenize_ns.append(middle - start)
        e2e_ns.append(end - start)
    return {"status": "ok", "name": name, "quantization": entry[Key.QUANTIZATION], "seq_len": seq_len,
            "file_bytes": entry[Key.BYTES], "sha256": entry[Key.SHA256], "threads": threads, "runs": runs,
            "warmup": warmup, "vocab_load_ms": vocab_ns / 1e6, "init_ms": init_ns / 1e6,
            "first_inference_ms": first_ns / 1e6, "latency_ms": summarize(model_ns),
            "tokenize_ms": summarize(tokenize_ns), "end_to_end_ms": summarize(e2e_ns),
            "throughput_per_s": throughput(e2e_ns), "peak_memory_mb": peak_memory_mb()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device_runtime.bench_worker")
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--data")
    args = parser.parse_args(argv)
    bundle = Bundle(args.bundle)
    texts = read_table(args.data, bundle.labels)[0] if args.data else list(SAMPLE_SENTENCES)
    print(json.dumps(measure(bundle, args.model, args.threads, args.runs, args.warmup, texts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
