"""MODEL_CARD.md, written from the manifest alone: what the models are, what they were trained on,
under which licenses, how well they do and where that was measured. `verify` renders it again
and compares, so a card always matches its manifest. Standard library only."""

from __future__ import annotations

from device_runtime.format import MODEL_CARD, Key
from device_runtime.platforms import describe

NON_COMMERCIAL = ("Weights trained on data under a NonCommercial license inherit its terms: the models in this "
                  "bundle may be used for non-commercial purposes only, with attribution, and derivatives must "
                  "be shared under the same license.")


def _get(obj, *keys):
    """obj[k1][k2]... or None when any level is missing or not a dict (manifests come from outside)."""
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _pct(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _model_rows(models: list) -> list[str]:
    rows = ["| model | quantization | MB | dev acc | test acc | macro-F1 | AllAgree acc | T | test ECE (raw / calibrated) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in models:
        metrics = _get(m, Key.METRICS) or {}
        ece = f"{_pct(_get(metrics, 'calibration', 'test_ece'))} / {_pct(_get(metrics, 'calibration', 'test_ece_calibrated'))}"
        rows.append(f"| {m.get(Key.NAME)} | {m.get(Key.QUANTIZATION)} | {m.get(Key.BYTES, 0) / 1e6:.2f} | "
                    f"{_pct(_get(metrics, 'dev', 'accuracy'))} | {_pct(_get(metrics, 'test', 'accuracy'))} | "
                    f"{_pct(_get(metrics, 'test', 'macro_f1'))} | {_pct(_get(metrics, 'test_allagree', 'accuracy'))} | "
                    f"{m.get(Key.TEMPERATURE, 1.0)} | {ece} |")
    return rows


def _platform_lines(models: list) -> list[str]:
    lines, seen = [], set()
    for m in models:
        for record in [_get(m, Key.METRICS)] + list(m.get(Key.PLATFORM_METRICS) or []):
            platform = _get(record, "platform")
            if isinstance(platform, dict) and describe(platform) not in seen:
                seen.add(describe(platform))
                lines.append(f"- {describe(platform)}")
        for record in m.get(Key.PLATFORM_METRICS) or []:
            agree = _get(record, "label_agreement") or {}
            lines.append(f"- {m.get(Key.NAME)} on {describe(_get(record, 'platform') or {})}: test accuracy "
                         f"{_pct(_get(record, 'test', 'accuracy'))}, AllAgree {_pct(_get(record, 'test_allagree', 'accuracy'))}, "
                         f"labels identical to the host's on {agree.get('same', '?')}/{agree.get('n', '?')} sentences, "
                         f"max probability difference {agree.get('max_probability_difference', '?')}")
    return lines


def render_card(manifest: dict) -> str:
    """The card's text: a pure function of the manifest (same manifest, same bytes)."""
    prov = manifest.get(Key.PROVENANCE) if isinstance(manifest.get(Key.PROVENANCE), dict) else {}
    models = [m for m in manifest.get(Key.MODELS, []) if isinstance(m, dict)]
    default = _get(manifest, Key.DEFAULT_MODEL, "name")
    why = f", chosen by {_get(manifest, Key.DEFAULT_MODEL, 'chosen_by')}: {_get(manifest, Key.DEFAULT_MODEL, 'rule')}"
    split = prov.get("split") if isinstance(prov.get("split"), dict) else {}
    license_ = str(prov.get("training_data_license", "unknown"))
    lines = [
        "# Model card: financial sentiment (negative / neutral / positive)", "",
        f"Labels, in output order: {', '.join(map(str, manifest.get(Key.LABELS, [])))}.",
        f"Default model: **{default or 'none recorded'}**{why if default else ''}.",
        "", "## Provenance and licenses", "",
        f"- Base checkpoint: {prov.get('base_checkpoint', 'unknown')}, license {prov.get('base_checkpoint_license', 'unknown')}.",
        f"- Teacher: {prov.get('teacher', 'unknown')}.",
        f"- Training data: {prov.get('training_data', 'unknown')}, license {license_}.",
        f"- Split: {', '.join(f'{k} {v}' for k, v in split.items()) or 'unknown'}"
        + (f" ({prov['split_source']})." if prov.get("split_source") else "."),
        f"- Converted with {prov.get('kit', 'unknown')}.",
    ]
    if "NC" in license_.replace("-", " ").split():
        lines += ["", NON_COMMERCIAL]
    lines += [
        "", "## Intended use and limits", "",
        "- Sentence-level sentiment of English financial news, as in Financial PhraseBank.",
        f"- Texts are cut to {manifest.get(Key.SEQ_LEN)} tokens ([CLS] and [SEP] included); classify reports truncation.",
        "- Not evaluated by the kit: social media, other languages, whole documents, other domains.",
        "- Probabilities are softmax(logits / T) with T fitted on dev; labels do not depend on T.",
        "- int8 arithmetic differs between CPUs: an int8 file can give other labels on a few sentences elsewhere.",
        "", "## Metrics", "", *_model_rows(models), "", "Measured on:", *_platform_lines(models),
        "", "## Files", "", f"- {manifest.get(Key.VOCAB)}: sha256 {manifest.get(Key.VOCAB_SHA256)}",
    ]
    for m in models:
        lines.append(f"- {m.get(Key.FILE)}: sha256 {m.get(Key.SHA256)}, {m.get(Key.BYTES)} bytes")
        if m.get(Key.ID_MAP_FILE):
            lines.append(f"- {m.get(Key.ID_MAP_FILE)}: sha256 {m.get(Key.ID_MAP_SHA256)}")
    for m in manifest.get(Key.MOBILE) or []:
        if isinstance(m, dict):
            lines.append(f"- {m.get(Key.FILE)}: sha256 {m.get(Key.SHA256)}, {m.get(Key.BYTES)} bytes, "
                         f"{m.get(Key.SOURCE_MODEL)} for MediaPipe Tasks' TextClassifier (phones)")
    return "\n".join(lines) + "\n"


def card_problem(folder, manifest: dict) -> str | None:
    """None if folder/MODEL_CARD.md is the card of `manifest`, else what is wrong with it."""
    path = folder / MODEL_CARD
    if not path.is_file():
        return f"{path}: model card missing"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return f"{path}: unreadable ({err})"
    return None if text == render_card(manifest) else f"{path}: does not match {folder / 'manifest.json'}"
