"""PNG plots of a `make bench` report: accuracy vs end-to-end latency and vs bundle size (Pareto fronts), sizes, threads."""

from __future__ import annotations

from pathlib import Path


def pareto_front(points: list[tuple[float, float, str]]) -> list[str]:
    """Names not beaten by another point that is both faster (lower x) and more accurate (higher y)."""
    front, best = [], float("-inf")
    for _x, y, name in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append(name)
            best = y
    return front


def draw_all(report: dict, stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if r.get("status") == "ok" and r.get("accuracy") is not None]
    paths = []

    title = f"seq {report['seq_len']}, {report['platform']['machine']}"
    paths.append(_front_plot(plt, [(r["e2e_p50_ms"], r["accuracy"] * 100, r["model"]) for r in rows],
                             "end-to-end p50 per sentence, ms (tokenizer included, 1 thread, log scale)",
                             f"Accuracy vs end-to-end latency ({title}, {_features(report)})", stem, "pareto"))
    sized = [(r["pack_bytes"] / 1e6, r["accuracy"] * 100, r["model"]) for r in rows if r.get("pack_bytes")]
    if sized:
        paths.append(_front_plot(plt, sized, "packed bundle, MB (model, vocab, id map, manifest, card; log scale)",
                                 f"Accuracy vs bundle size ({title})", stem, "pareto-size"))

    fig, ax = plt.subplots(figsize=(10, 5))
    ordered = sorted(rows, key=lambda r: r["bytes"] or 0)
    xs = range(len(ordered))
    ax.bar([x - 0.2 for x in xs], [r["bytes"] / 1e6 for r in ordered], width=0.4, label="file")
    ax.bar([x + 0.2 for x in xs], [(r["gzip_bytes"] or 0) / 1e6 for r in ordered], width=0.4, label="gzip -9")
    ax.set_xticks(list(xs), [r["model"] for r in ordered], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("size, MB")
    ax.set_title("Model file size per variant")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    paths.append(_save(fig, stem, "size"))

    fig, ax = plt.subplots(figsize=(7, 5))
    by_model: dict[str, list] = {}
    for r in report["threads"]:
        if r.get("status") == "ok":
            by_model.setdefault(r["model"], []).append((r["threads"], r["latency_ms"]["p50"]))
    for name, values in by_model.items():
        values.sort()
        ax.plot([v[0] for v in values], [v[1] for v in values], marker="o", label=name)
    ax.set_xlabel("interpreter threads")
    ax.set_ylabel("p50 latency, ms")
    ax.set_xticks(sorted({t for v in by_model.values() for t, _ in v}))
    ax.set_title("Latency vs threads")
    ax.grid(True, alpha=0.3)
    ax.legend()
    paths.append(_save(fig, stem, "threads"))
    if report.get("calibration"):
        paths.append(_reliability(plt, report["calibration"], stem))
    return paths


def _features(report: dict) -> str:
    return ", ".join(report["platform"].get("int8_features") or []) or "no int8 dot-product features listed"


def _front_plot(plt, points: list[tuple[float, float, str]], xlabel: str, title: str, stem: Path, kind: str) -> Path:
    """Accuracy (y) against a cost (x, log scale), the Pareto front in red."""
    fig, ax = plt.subplots(figsize=(9, 6))
    front = pareto_front(points)
    placed: list[tuple[float, float]] = []
    for x, y, name in points:
        on_front = name in front
        ax.scatter(x, y, color="tab:red" if on_front else "tab:blue", s=40 if on_front else 20, zorder=3)
        # Stack the labels of points that (nearly) coincide, e.g. float32 and float16 twins.
        near = sum(1 for px, py in placed if abs(px / x - 1) < 0.12 and abs(py - y) < 0.25)
        placed.append((x, y))
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4 - 10 * near), fontsize=7,
                    fontweight="bold" if on_front else "normal")
    front_points = sorted((x, y) for x, y, name in points if name in front)
    ax.plot([p[0] for p in front_points], [p[1] for p in front_points], "--", color="tab:red", label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy, %")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, stem, kind)


def _reliability(plt, calibration: dict, stem: Path) -> Path:
    """Reliability diagram of the default model on test: accuracy per confidence bin, raw and calibrated."""
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], ":", color="gray", label="perfect calibration")
    for key, color, label in (("raw", "tab:blue", "softmax(logits)"), ("calibrated", "tab:red", "softmax(logits / T)")):
        bins = calibration[key]
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color=color,
                label=f"{label}: ECE {calibration[f'ece_{key}']:.4f}")
    ax.set_xlabel("confidence (top probability), mean per bin")
    ax.set_ylabel("accuracy per bin")
    ax.set_title(f"Reliability, {calibration['model']} (T = {calibration['temperature']:g}, {calibration['n']} test sentences)")
    ax.set_xlim(0.3, 1.0)
    ax.set_ylim(0.3, 1.0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    return _save(fig, stem, "reliability")


def _save(fig, stem: Path, kind: str) -> Path:
    path = Path(f"{stem}-{kind}.png")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
