"""MODEL_CARD.md for a run's generator: written by `covidct export` beside the SavedModel and by
`covidct best` beside the checkpoint it pulls (Mitchell et al. 2019, "Model Cards for Model
Reporting": data, training, figures, intended use, limits).

Everything comes from the run itself and the dataset it names: config.json, metrics.jsonl (the
line of the checkpoint's epoch, else the newest line with hold-out figures before it), the
dataset's PREPARED record and build audit (builder version, classes and counts per split), and
the built files' fingerprint (`storage.fingerprint`: names, sizes and CRC32C; a bucket's without
downloading). A figure the run never measured is said to be missing, not invented.
"""

from __future__ import annotations

import collections
import json
from typing import Any

from job import dataset_record, run, storage
from job.metrics import heldout
from job.storage import StorageError

NAME = "MODEL_CARD.md"
AUDIT_JSON = "audit/audit.json"  # the covid_ct build's audit, inside <dataset>/<config>/<version>/


def dataset_facts(data_dir: str, config_name: str) -> dict[str, Any]:
    """Builder version, source, fingerprints and kept scans per split and class of
    covid_ct/`config_name` in `data_dir`; {} for what cannot be read (an unprepared dataset)."""
    record = dataset_record.read(data_dir, config_name) or {}
    facts: dict[str, Any] = {"record": record}
    version = record.get("builder_version")
    if not version:
        return facts
    folder = storage.join(data_dir, dataset_record.DATASET, config_name, version)
    try:
        facts["fingerprint"] = storage.fingerprint(folder)
        audit = json.loads(storage.read_bytes(storage.join(folder, AUDIT_JSON)))
    except (StorageError, OSError, ValueError):
        return facts
    counts = collections.Counter((r["split"], r["label"]) for r in audit.get("rows", [])
                                 if r.get("decision") == "kept")
    facts["counts"] = {split: {label: n for (s, label), n in sorted(counts.items()) if s == split}
                       for split in sorted({s for s, _ in counts})}
    return facts


def metrics_at(run_uri: str, epoch: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the metrics line of `epoch`, the newest line at or before it with hold-out figures) from
    the run's metrics.jsonl; {} for either that does not exist."""
    uri = storage.join(run_uri, run.METRICS)
    if not storage.exists(uri):
        return {}, {}
    lines = [m for m in run.parse_metrics(storage.read_bytes(uri).decode()) if m["epoch"] <= epoch]
    measured = [m for m in lines if "quality_ratio" in m]
    return ([m for m in lines if m["epoch"] == epoch] or [{}])[-1], (measured or [{}])[-1]


def _fmt(m: dict, key: str, spec: str = ".4g") -> str:
    return format(m[key], spec) if isinstance(m.get(key), (int, float)) else "not measured"


def _over(m: dict, key: str) -> str:
    value, floor = m.get(f"{key}_holdout"), m.get(f"{key}_floor")
    if value is None or floor is None:
        return "not measured over"
    return f"{heldout.ratio(value, floor):.3g}x"


def _figures(m: dict) -> list[str]:
    if not m:
        return ["- No epoch of this run measured its hold-out figures (metrics_every_epochs)."]
    return [
        f"- Measured at epoch {m['epoch']} ({_fmt(m, 'kimg', '.1f')} kimg), the EMA generator's "
        "samples against the hold-out split (real scans the run never trained on), each beside "
        "its real floor (training scans vs the hold-out):",
        f"  - SWD x1e3: {_fmt(m, 'swd_holdout')} (floor {_fmt(m, 'swd_floor')}; "
        f"{_over(m, 'swd')} its floor)",
        f"  - intensity W1: {_fmt(m, 'intensity_w1_holdout')} (floor "
        f"{_fmt(m, 'intensity_w1_floor')}; {_over(m, 'intensity_w1')} its floor)",
        f"  - quality_ratio (the worse of the two over its floor; 1 = as close as real unseen "
        f"scans): {_fmt(m, 'quality_ratio', '.3g')}",
        f"  - diversity (coverage of the hold-out over the real training scans' coverage; near "
        f"0 = mode collapse): {_fmt(m, 'diversity', '.3g')}",
        "- Memorisation: not part of training's figures. `covidct evaluate --run RUN --checkpoint "
        "CKPT --out DIR` runs the test (nearest training scan under shifts, zoom, mirror and "
        "contrast, calibrated on the hold-out) and its report says whether copies were found.",
    ]


def _data(config, facts: dict) -> list[str]:
    record = facts.get("record", {})
    source = {"demo_phantoms": "SYNTHETIC DEMO PHANTOMS (not patient data)",
              "real_scans": "real public scans"}.get(record.get("source"), "unknown (no PREPARED record)")
    lines = [
        f"- Dataset: `covid_ct/{config.dataset_config}` in `{config.data_dir}`, TFDS builder "
        f"version {record.get('builder_version', 'unknown')}; source: {source}.",
        f"- Dataset fingerprint (the built files): `{facts.get('fingerprint', 'unavailable')}`"
        + (f"; scans: `{record['manual_dir_fingerprint']}`" if record.get("manual_dir_fingerprint")
           else "") + ".",
    ]
    for split, by_class in facts.get("counts", {}).items():
        role = "trained on" if split == "train" else "hold-out: never trained on, picks the best checkpoint"
        each = ", ".join(f"{label} {n}" for label, n in by_class.items())
        lines.append(f"- Split `{split}` ({role}): {sum(by_class.values())} scans ({each}).")
    classes = ", ".join(config.label_names) if config.label_names else "every class"
    lines.append(f"- Classes trained: {classes}"
                 + ("; class-conditional (`label` input)." if config.conditional else "; unconditional."))
    return lines


def for_run(run_uri: str, checkpoint: str, epoch: int, config) -> str:
    """MODEL_CARD.md text for the EMA generator of `run_uri` at `checkpoint` (epoch `epoch`)."""
    facts = dataset_facts(config.data_dir, config.dataset_config)
    line, m = metrics_at(run_uri, epoch)
    kimg = line.get("kimg")
    defaults = type(config)().to_dict()
    changed = {k: v for k, v in config.to_dict().items() if v != defaults[k]}
    return "\n".join([
        f"# Model card: covidct-gan generator `{run_uri}` at `{checkpoint}` (epoch {epoch})", "",
        "A DCGAN generator of synthetic 2-D lung CT slices (the run's EMA generator, drawn with "
        "standing batch-norm statistics). **Its images are not patient scans**; `covidct "
        "generate` tags every PNG synthetic=true.", "",
        "## Data", "", *_data(config, facts), "",
        "## Training", "",
        f"- {epoch} of {config.epochs} epochs"
        + (f", {kimg:.1f} kimg (thousands of training images shown)" if kimg is not None else "")
        + f"; global batch {config.global_batch_size}, {config.height}x{config.width} pixels, "
        f"latent z of {config.latent_dim} floats.",
        "- Config (the fields that differ from the defaults; the whole of it is the run's "
        "`config.json`, every field explained by `covidct config`):", "",
        "```json", json.dumps(changed, indent=1, sort_keys=True), "```", "",
        "## Figures", "", *_figures(m), "",
        "## Intended use", "",
        "Research on data augmentation and generative models for lung CT: augmenting a training "
        "set, studying what a GAN learns from a few hundred scans, teaching. **Not for diagnosis**, "
        "clinical decisions, or training a model used on patients without clinical validation; "
        "not a substitute for real scans when evaluating a model.", "",
        "## Limits", "",
        "- Anatomy can be implausible (asymmetric lungs, broken ribs, vessels that end abruptly) "
        "while the figures are near their floors: look at the images.",
        "- Small data: the public COVID-CT set holds a few hundred slices, mostly cropped from "
        "paper figures; the generator inherits their resolution, windowing and site biases.",
        "- A class-conditional generator's lesions may be absent, faint or invented; the class "
        "it is asked for is not a diagnosis.",
        "- Mode collapse and memorisation are measured, not excluded: see Figures.",
        "",
    ])
