"""Prove the device runtime on (emulated) aarch64: verify, classify and eval a bundle model under
../shared/tools/arm64-python, compare every prediction with the same run on this host, and record the
emulated metrics and the label agreement in the bundle's manifest (and model card).

    python -m benchmarks.arm_check --bundle dist [--model NAME] [--data ../shared/data/fpb/test.tsv]
Exit code 0 when the emulated run reports aarch64 and verifies, and its labels agree with the host's:
all of them for float models; for integer models (int8 arithmetic differs between CPUs) at least
--min-agreement of them. The agreement is recorded either way."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from converter.export.bundle import write_manifest
from device_runtime.bundle import Bundle
from device_runtime.format import DEVICE_DIR, MANIFEST, Key, Quantization
from device_runtime.platforms import platform_record

ROOT = Path(__file__).resolve().parents[1]
FLOAT_QUANTIZATIONS = (Quantization.FLOAT32, Quantization.FLOAT16)  # float kernels: labels must be identical
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


def agreement_holds(quantization: str, same: int, n: int, min_agreement: float) -> tuple[bool, str]:
    """-> (passes, the rule applied): float files must agree on every label, integer files on min_agreement."""
    if quantization in FLOAT_QUANTIZATIONS:
        return same == n, "float model: every label identical"
    return same >= min_agreement * n, f"integer model: >= {min_agreement:.0%} identical labels"


def platform_of(python: list[str]) -> dict:
    code = "import json; from device_runtime.platforms import platform_record as p; print(json.dumps(p(emulated=True)))"
    out = subprocess.run([*python, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "ARM64_WHEELS": WHEELS, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout) if out.returncode == 0 else {"machine": "unknown", "emulated": True}


def record(bundle: Path, model: str, result: dict) -> list[Path]:
    """Put `result` into the model's platform_metrics (replacing one of the same platform) in the bundle's
    manifest and in device/'s, each written atomically with its model card re-rendered. -> files changed."""
    changed = []
    for folder in (bundle, bundle / DEVICE_DIR):
        path = folder / MANIFEST
        if not path.is_file():
            continue
        manifest = json.loads(path.read_text(encoding="utf-8"))
        entry = next((m for m in manifest[Key.MODELS] if m[Key.NAME] == model), None)
        if entry is None:
            continue
        kept = [r for r in entry.get(Key.PLATFORM_METRICS, []) if r.get("platform") != result["platform"]]
        entry[Key.PLATFORM_METRICS] = [*kept, result]
        write_manifest(folder, manifest)
        changed.append(path)
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="dist")
    parser.add_argument("--model", help="default: the bundle's default model")
    parser.add_argument("--min-agreement", type=float, default=0.98, help="integer models: share of identical labels")
    parser.add_argument("--no-record", action="store_true", help="leave the manifest as it is")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fpb" / "test.tsv"))
    parser.add_argument("--limit", type=int, default=0, help="only the first N sentences (0: all)")
    args = parser.parse_args()
    host, arm = [sys.executable], [str(ARM64)]
    entry = Bundle(args.bundle).entry(args.model)  # checked like any bundle; default: its default model
    model = entry[Key.NAME]

    machine = subprocess.run([*arm, "-c", "import platform; print(platform.machine())"], capture_output=True,
                             text=True, env={**os.environ, "ARM64_WHEELS": WHEELS}).stdout.strip()
    print(f"emulated machine: {machine}", flush=True)
    verify = device(arm, "verify", "--bundle", args.bundle)
    print(verify.stdout.strip() or verify.stderr.strip(), flush=True)
    sample = device(arm, "classify", "--bundle", args.bundle, "--model", model, *SAMPLES)
    print(sample.stdout.strip() or sample.stderr.strip(), flush=True)
    evaluation = device(arm, "eval", "--bundle", args.bundle, "--model", model, "--data", args.data, "--json")
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
    same = len(texts) - len(differ)
    agree, rule = agreement_holds(entry[Key.QUANTIZATION], same, len(texts), args.min_agreement)
    ok = machine == "aarch64" and verify.returncode == 0 and evaluation.returncode == 0 and agree
    if evaluation.returncode == 0 and not args.no_record and not args.limit:
        scored = json.loads(evaluation.stdout)
        splits = {k: {m: scored[k][m] for m in ("accuracy", "macro_f1", "n")} for k in ("test", "test_allagree") if k in scored}
        result = {"platform": platform_of(arm), "data": Path(args.data).name, **splits,
                  "label_agreement": {"same": same, "n": len(texts), "max_probability_difference": round(worst, 4),
                                      "compared_with": platform_record()}}
        for path in record(Path(args.bundle), model, result):
            print(f"recorded in {path}")
    print(f"arm-check: {'PASS' if ok else 'FAIL'} ({rule})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
