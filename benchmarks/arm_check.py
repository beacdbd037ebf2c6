"""Prove the device runtime on (emulated) aarch64: verify, classify and eval a bundle model under
../shared/tools/arm64-python and compare every prediction with the same run on this host.

    python -m benchmarks.arm_check --bundle dist [--model NAME] [--data ../shared/data/fpb/test.tsv]
Exit code 0 only when the emulated run reports aarch64, verifies, and predicts identical labels."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARM64 = ROOT.parent / "shared" / "tools" / "arm64-python"
WHEELS = "numpy ai-edge-litert==2.3.0"
SAMPLES = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn .", "The company 's net sales fell by 5 % .",
           "The annual general meeting will be held in Helsinki ."]


def device(python: list[str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ARM64_WHEELS": WHEELS, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*python, "-m", "device_runtime", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True)


def predictions(python, bundle, model, texts) -> list[dict]:
    out = device(python, "classify", "--bundle", bundle, "--model", model, "--json", stdin="\n".join(texts) + "\n")
    if out.returncode:
        sys.exit(f"classify failed on {' '.join(python)}: {out.stderr.strip()}")
    return [json.loads(line) for line in out.stdout.splitlines()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="dist")
    parser.add_argument("--model", help="default: the bundle's smallest int8 model")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fpb" / "test.tsv"))
    parser.add_argument("--limit", type=int, default=0, help="only the first N sentences (0: all)")
    args = parser.parse_args()
    host, arm = [sys.executable], [str(ARM64)]
    manifest = json.loads((Path(args.bundle) / "manifest.json").read_text())
    int8 = [m for m in manifest["models"] if m["quantization"] == "int8"] or manifest["models"]
    model = args.model or min(int8, key=lambda m: m["bytes"])["name"]

    machine = subprocess.run([*arm, "-c", "import platform; print(platform.machine())"], capture_output=True,
                             text=True, env={**os.environ, "ARM64_WHEELS": WHEELS}).stdout.strip()
    print(f"emulated machine: {machine}", flush=True)
    verify = device(arm, "verify", "--bundle", args.bundle)
    print(verify.stdout.strip() or verify.stderr.strip(), flush=True)
    sample = device(arm, "classify", "--bundle", args.bundle, "--model", model, *SAMPLES)
    print(sample.stdout.strip() or sample.stderr.strip(), flush=True)
    evaluation = device(arm, "eval", "--bundle", args.bundle, "--model", model, "--data", args.data)
    print(evaluation.stdout.strip() or evaluation.stderr.strip(), flush=True)

    lines = Path(args.data).read_text(encoding="utf-8").splitlines()[1:]
    texts = [line.split("\t")[0] for line in lines][: args.limit or None]
    on_host, on_arm = predictions(host, args.bundle, model, texts), predictions(arm, args.bundle, model, texts)
    differ = [i for i, (a, b) in enumerate(zip(on_host, on_arm)) if a["label"] != b["label"]]
    worst = max(abs(a["probabilities"][k] - b["probabilities"][k]) for a, b in zip(on_host, on_arm) for k in a["probabilities"])
    print(f"{model}: {len(texts) - len(differ)}/{len(texts)} identical labels host (x86_64) vs emulated {machine}; "
          f"max |probability difference| {worst:.2e}")
    for i in differ:
        print(f"  differs: {texts[i][:70]!r}: host {on_host[i]['label']}, arm {on_arm[i]['label']}")
    ok = machine == "aarch64" and verify.returncode == 0 and evaluation.returncode == 0 and not differ
    print("arm-check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
