"""Read `agegender bench` results (``results/bench/<device>.json``) and lay them out as tables.

The results name what they measured by structured fields (``model_name``, ``stage``,
``variant``, ``size``, ...; `agegender.bench.suite.Measurement.fields`); the display labels
(e.g. ``"resnet50_finetune, stage 2"``) are made here, from those fields and the model table, and
never read back. A file written before the fields existed (format 1, e.g. the committed
``results/bench/cpu.json``) is read by `from_format_1`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from agegender.bench.suite import ANCHOR, RESULTS_FORMAT
from agegender.errors import AgegenderError
from agegender.models.specs import MODELS, model_names

VARIANT_LABELS = {  # what each variant of `suite.VARIANTS` changed, in words
    "keras_augmentation": "Keras' RandomRotation and RandomZoom",
    "no_augmentation": "no augmentation",
}
TRAINING_PARTS = ("pipeline", "compile", "backends")  # their rows are training measurements


# --- display labels ----------------------------------------------------------------------------


def training_label(model_name: str, stage: int | None, variant: str | None = None) -> str:
    """How the appendix names a training measurement: ``"custom_cnn"``, ``"resnet50_finetune,
    stage 2"``, ``"vgg16_features, end to end"``, ``"custom_cnn, no augmentation"``, ..."""
    model = MODELS.get(model_name)
    if variant == ANCHOR:
        return f"{model.base if model else model_name}, every layer trained"
    if variant:
        return f"{model_name}, {VARIANT_LABELS.get(variant, variant)}"
    if model and model.on_features:
        return f"{model_name}, end to end"
    if model and model.fine_tunes:
        return f"{model_name}, stage {stage}"
    return model_name


def label(row: dict) -> str:
    """The display label of a row of the pipeline, compile or backends table."""
    return training_label(row["model_name"], row["stage"], row["variant"])


def measurement_label(record: dict) -> str:
    """The display label of a measurement (`suite.Measurement.record`)."""
    kind = record["spec"]["kind"]
    if kind == "train":
        return label(record)
    if kind == "cache":
        return "data preparation"
    if kind == "epoch":
        return f"{record['model_name']} epoch"
    return record["model_name"]


def growth_label(fit: dict) -> str:
    """E.g. ``"data preparation vs images, 64 px"``, ``"custom_cnn epoch vs pixels per image,
    2000 images"`` (see `suite._scaling` for the fields of a growth fit)."""
    subject = "data preparation" if fit["time_of"] == "cache" else f"{fit['model_name']} epoch"
    axis = "images" if fit["against"] == "images" else "pixels per image"
    at = f", {fit['size']} px" if fit["size"] else ""
    at += f", {fit['images']} images" if fit["images"] else ""
    return f"{subject} vs {axis}{at}"


def labelled(rows: list[dict]) -> list[dict]:
    """Training rows with their display label as ``model`` (what tables and plots show)."""
    return [{**row, "model": label(row)} for row in rows]


# --- reading -----------------------------------------------------------------------------------


def load(folder: Path) -> dict[str, dict]:
    """Every bench results file in `folder`, by device (``{"cpu": {...}, "gpu": {...}}``), in the
    current format (a format 1 file is read by `from_format_1`)."""
    found = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            figures = json.loads(path.read_text())
        except ValueError as error:
            raise AgegenderError(f"{path} is not a bench results file ({error}).") from error
        found[path.stem] = figures if figures.get("format") else from_format_1(figures, path)
    return found


def main_figures(folder: Path) -> dict:
    """The bench results the appendix shows: the GPU's when there are some, else the CPU's; the
    training rows carry their display labels as ``model`` (for `agegender.plots`).

    Raises:
        AgegenderError: when `folder` holds none (run `agegender bench` first).
    """
    found = load(folder)
    if not found:
        raise AgegenderError(
            f"No bench results in {folder}: run `agegender bench` (or `make bench`) first."
        )
    figures = found.get("gpu") or found.get("cpu") or next(iter(found.values()))
    return figures | {part: labelled(figures[part]) for part in TRAINING_PARTS}


# Format 1 named measurements and training rows only by labels, and growth fits by keys such as
# "custom_cnn epoch vs pixels per image, 2000 images".
_FORMAT_1_ANCHOR = "resnet50, every layer trained"
_FORMAT_1_AUGMENT = {"keras": "keras_augmentation", "off": "no_augmentation"}
_FORMAT_1_GROWTH = re.compile(
    r"(?:data preparation|(?P<model>\w+) epoch) vs (?P<axis>images|pixels per image)"
    r"(?:, (?P<value>\d+) (?P<unit>px|images))?"
)
_TABLES = {  # each derived table: the measurements its rows were made from, the fields it takes
    "pipeline": ("pipeline", "train", ("model_name", "stage", "variant")),
    "features": ("features", "features", ("model_name",)),
    "compile": ("compile", "train", ("model_name", "stage", "variant")),
    "backends": ("backends", "train", ("model_name", "stage", "variant")),
    "data": ("scaling", "cache", ()),
    "epochs": ("scaling", "epoch", ("model_name",)),
}


def from_format_1(figures: dict, path: Path | str = "the results") -> dict:
    """Format 1 results (no ``"format"``; rows named by display labels) in the current format.

    Each measurement's fields come from its spec (model, stage, augmentation; a features
    measurement was of the model its label names, and the anchor had a label of its own). Each
    derived row was made from one successful measurement, in the measurements' order, so it takes
    that measurement's fields (its size, and its label where it has one, are checked). A growth
    fit takes the fields its key names. Every figure is kept as it was.

    Raises:
        AgegenderError: a row that does not match its measurement.
    """
    old = figures["measurements"]
    records = [_format_1_record(record) for record in old]
    upgraded = {**figures, "format": RESULTS_FORMAT, "measurements": records}
    pairs = list(zip(old, records, strict=True))
    for table in (*TRAINING_PARTS, "features"):
        upgraded[table] = _with_fields(figures[table], pairs, table, path)
    scaling = figures["scaling"]
    upgraded["scaling"] = {
        "data": _with_fields(scaling["data"], pairs, "data", path),
        "epochs": _with_fields(scaling["epochs"], pairs, "epochs", path),
        "growth": [_format_1_growth(key, fit) for key, fit in scaling["growth"].items()],
    }
    return upgraded


def _format_1_record(record: dict) -> dict:
    spec = record["spec"]
    variant = _FORMAT_1_AUGMENT.get(spec.get("augment"))
    if record["label"] == _FORMAT_1_ANCHOR:
        variant = ANCHOR
    model = spec.get("model", record["label"] if spec["kind"] == "features" else None)
    fields = {"model_name": model, "stage": spec.get("stage"), "variant": variant}
    kept = {key: record[key] for key in ("spec", "figures", "error") if key in record}
    return {"part": record["part"], **fields, "size": spec["size"], **kept}


def _with_fields(rows: list[dict], pairs: list[tuple[dict, dict]], table: str, path) -> list[dict]:
    """The rows of a format 1 table, each with the fields of the measurement it was made from."""
    part, kind, fields = _TABLES[table]
    sources = [
        (old, new)
        for old, new in pairs
        if new["figures"] and (new["part"], new["spec"]["kind"]) == (part, kind)
    ]
    if len(sources) != len(rows):
        raise AgegenderError(f"{path}: {len(rows)} {table} rows but {len(sources)} measurements.")
    upgraded = []
    for row, (old, new) in zip(rows, sources, strict=True):
        if (row["size"], row.get("model", old["label"])) != (new["size"], old["label"]):
            raise AgegenderError(f"{path}: the {table} row {row} is not of {old['label']!r}.")
        kept = {key: value for key, value in row.items() if key != "model"}
        upgraded.append({key: new[key] for key in fields} | kept)
    return upgraded


def _format_1_growth(key: str, fit: dict) -> dict:
    named = _FORMAT_1_GROWTH.fullmatch(key)
    if named is None:
        raise AgegenderError(f"Not a growth fit of bench format 1: {key!r}")
    value = int(named["value"]) if named["value"] else None
    return {
        "time_of": "epoch" if named["model"] else "cache",
        "model_name": named["model"],
        "against": "images" if named["axis"] == "images" else "pixels",
        "size": value if named["unit"] == "px" else None,
        "images": value if named["unit"] == "images" else None,
        **fit,
    }


# --- tables ------------------------------------------------------------------------------------


def pipeline_table(figures: dict) -> pd.DataFrame:
    """Training images/s on real cached images and on synthetic in-memory batches, per model."""
    return _table(
        labelled(figures["pipeline"]),
        {
            "model": "model",
            "size": "px",
            "synthetic_images_per_s": "synthetic images/s",
            "real_images_per_s": "real images/s",
            "ratio": "real / synthetic",
        },
    )


def features_table(figures: dict) -> pd.DataFrame:
    """VGG16: a heads epoch on cached features against an end-to-end epoch, and extraction."""
    return _table(
        figures["features"],
        {
            "size": "px",
            "epoch_images": "epoch images",
            "end_to_end_epoch_seconds": "end-to-end epoch s",
            "head_epoch_seconds": "heads epoch on cached features s",
            "speedup": "speedup",
            "extraction_images_per_s": "extraction images/s",
            "whole_split_extraction_seconds": "extraction of the whole split s",
        },
    )


def compile_table(figures: dict) -> pd.DataFrame:
    """Training images/s per precision and XLA setting, and per augmentation of the custom CNN."""
    return _table(
        labelled(figures["compile"]),
        {
            "model": "model",
            "size": "px",
            "precision": "precision",
            "xla": "XLA",
            "images_per_s": "images/s",
            "relative": "vs float32 without XLA",
        },
    )


def backends_table(figures: dict) -> pd.DataFrame:
    """The same training step on each backend, with the loader in the main thread or threads."""
    columns = {
        "model": "model",
        "backend": "backend",
        "synthetic_images_per_s": "synthetic images/s",
    }
    for row in figures["backends"]:
        for key in row:
            if key.startswith("real_images_per_s_"):
                workers = key.removeprefix("real_images_per_s_").removesuffix("_workers")
                columns[key] = f"real, {workers} loader thread(s)"
                columns[f"ratio_{workers}_workers"] = f"ratio, {workers}"
    return _table(labelled(figures["backends"]), columns)


def scaling_table(figures: dict, which: str) -> pd.DataFrame:
    """``which="data"``: decoding into the cache; ``"epochs"``: one custom CNN epoch."""
    columns = {"size": "px", "images": "images", "seconds": "seconds", "images_per_s": "images/s"}
    if which == "data":
        columns["cache_mib"] = "cache MiB"
    columns |= {"peak_anon_mib": "peak heap MiB", "peak_rss_mib": "peak resident MiB"}
    return _table(figures["scaling"][which], columns)


def growth_table(figures: dict) -> pd.DataFrame:
    """The fitted exponents b of ``time = a * x**b`` (1: linear)."""
    rows = [{"what": growth_label(fit), **fit} for fit in figures["scaling"]["growth"]]
    return _table(rows, {"what": "time of", "exponent": "exponent b", "r2": "R²"})


def memory_table(figures: dict) -> pd.DataFrame:
    """Peak memory of each training measurement and of building the whole cache, per size."""
    rows = [{**row, "what": f"training {label(row)}"} for row in figures["pipeline"]] + [
        {**row, "what": "data preparation (decode into the cache)"}
        for row in figures["scaling"]["data"]
        if row["images"] == max(r["images"] for r in figures["scaling"]["data"])
    ]
    return _table(
        rows,
        {
            "what": "what",
            "size": "px",
            "cache_mib": "cache MiB",
            "peak_anon_mib": "peak heap MiB",
            "peak_rss_mib": "peak resident MiB",
        },
    )


def findings(figures: dict) -> dict[str, str]:
    """The numbers the appendix states in its text, formatted; a figure not measured is absent."""
    sizes = figures["parameters"]["sizes"]
    found = {
        "target_ratio": f"{figures['targets']['pipeline_ratio']:.2f}",
        "target_speedup": f"{figures['targets']['feature_speedup']:.0f}",
        **_pipeline_findings(figures["pipeline"]),
        **_feature_findings(figures["features"]),
        "first_size": str(sizes[0]),
        "last_size": str(sizes[-1]),
        **_compile_findings(figures["compile"], sizes),
        **_growth_findings(figures["scaling"]["growth"]),
        **_memory_findings(figures),
    }
    return found


# The models the appendix's text compares, by what it calls them: the CNN trained from scratch and
# the fine-tuned ResNet-50 (its first stage).
FINDING_MODELS = {
    "cnn": lambda model: not model.transfer and not model.on_features,
    "resnet": lambda model: model.base == "resnet50",
}


def _pipeline_findings(pipeline: list[dict]) -> dict:
    if not pipeline:
        return {}
    worst = min(pipeline, key=lambda row: row["ratio"])
    return {
        "lowest_ratio": f"{worst['ratio']:.2f}",
        "lowest_ratio_model": f"{label(worst)} at {worst['size']} px",
    }


def _feature_findings(features: list[dict]) -> dict:
    speedups = sorted(row["speedup"] for row in features if "speedup" in row)
    if not speedups:
        return {}
    return {"feature_speedup": f"{speedups[0]:,.0f} to {speedups[-1]:,.0f}"}


def _compile_findings(compiled: list[dict], sizes: list[int]) -> dict:
    """XLA and bfloat16 against float32 without XLA, at the first and the last size, and the
    project's augmentation against Keras' layers (with XLA as in the run)."""
    rate = {_setting(row): row["images_per_s"] for row in compiled}
    found = {}
    for name, test in FINDING_MODELS.items():
        model = next((m.name for m in MODELS.values() if test(m)), None)
        for key, size, setting in (
            (f"xla_{name}", sizes[0], ("float32", True)),
            (f"bf16_{name}", sizes[0], ("mixed_bfloat16", False)),
            (f"xla_{name}_last", sizes[-1], ("float32", True)),
        ):
            plain = rate.get((model, 1, None, size, "float32", False))
            other = rate.get((model, 1, None, size, *setting))
            if plain and other:
                found[key] = f"{other / plain:.2f}"
    return found | _augmentation_finding(compiled, rate, sizes[0])


def _setting(row: dict) -> tuple:
    """What a compile row measured: model, stage, variant, size, precision and XLA."""
    fields = ("model_name", "stage", "variant", "size", "precision", "xla")
    return tuple(row[key] for key in fields)


def _augmentation_finding(compiled: list[dict], rate: dict, size: int) -> dict:
    keras_layers = [row for row in compiled if row["variant"] == "keras_augmentation"]
    if not keras_layers:
        return {}
    before = keras_layers[0]
    after = rate.get((before["model_name"], before["stage"], None, size, "float32", True))
    return {"augmentation_speedup": f"{after / before['images_per_s']:.2f}"} if after else {}


def _growth_findings(growth: list[dict]) -> dict:
    """The range of the exponents against images, of data preparation and of an epoch."""
    found = {}
    for key, time_of in (("prep_exponent", "cache"), ("epoch_exponent", "epoch")):
        exponents = sorted(
            fit["exponent"]
            for fit in growth
            if (fit["time_of"], fit["against"]) == (time_of, "images")
        )
        if exponents:
            found[key] = " to ".join(
                dict.fromkeys(f"{b:.2f}" for b in (exponents[0], exponents[-1]))
            )
    return found


def _memory_findings(figures: dict) -> dict:
    found = {}
    memory = memory_table(figures)
    if not memory.empty:
        found["peak_heap"] = f"{memory['peak heap MiB'].max():,.0f}"
    data = figures["scaling"]["data"]
    if data:
        largest = max(data, key=lambda row: row["cache_mib"])
        found["largest_cache"] = f"{largest['cache_mib']:,.0f}"
        found["largest_cache_size"] = f"{largest['size']}"
        found["largest_cache_heap"] = f"{largest['peak_anon_mib']:,.0f}"
    return found


def defaults_table(figures: dict) -> pd.DataFrame:
    """What the training code does by default on the run's device and sizes: XLA per model and
    backend, precision, loader threads (`agegender.training`, as it is now)."""
    from agegender.data.loader import DEFAULT_WORKERS
    from agegender.training.runtime import default_jit_compile, default_precision

    gpu = figures["device"] == "gpu"
    sizes = figures["parameters"]["sizes"]
    backend = figures["parameters"].get("backend", "tensorflow")
    rows = [
        {
            "setting": f"XLA, {model}, {backend}",
            **{
                f"{size} px": _on(default_jit_compile(backend, model, gpu=gpu, image_size=size))
                for size in sizes
            },
        }
        for model in model_names()
    ]
    rows.append({"setting": "XLA, every model, JAX", **{f"{size} px": "on" for size in sizes}})
    for setting, value in (
        ("precision", default_precision(gpu=gpu)),
        ("loader threads", str(DEFAULT_WORKERS)),
    ):
        rows.append({"setting": setting, **{f"{size} px": value for size in sizes}})
    return pd.DataFrame(rows).set_index("setting")


def _on(value) -> str:
    return "on" if value is True else "off"


def anchor_note(figures: dict):
    """ResNet-50 at 224 px against the published A100 figure, or why there is no such figure."""
    from IPython.display import Markdown

    anchor = figures.get("anchor")
    if not anchor:
        return Markdown(
            f"*This run was made on a {figures['device'].upper()} "
            f"({figures['machine']}); it has no GPU figures.*"
        )
    return Markdown(
        f"ResNet-50, every layer trained, 224 px, mixed float16 with XLA: "
        f"**{anchor['images_per_s']:,.0f} images/s**, {anchor['ratio']:.2f} times the published "
        f"{anchor['published_a100_images_per_s']:,.0f} images/s of one A100."
    )


def failures(figures: dict) -> pd.DataFrame:
    """The measurements that did not run, and why."""
    rows = [m for m in figures["measurements"] if m.get("error")]
    return pd.DataFrame(
        [{"part": m["part"], "what": measurement_label(m), "why": m["error"]} for m in rows],
        columns=["part", "what", "why"],
    ).set_index("part")


def failures_note(figures: dict):
    """The measurements that did not run, as a table, or a sentence saying that all ran."""
    from IPython.display import Markdown

    table = failures(figures)
    if table.empty:
        return Markdown("*Every planned measurement ran.*")
    return table


def summary(figures: dict) -> str:
    """All tables as text, for the terminal."""
    sections = [
        ("Input pipeline vs model", pipeline_table),
        ("VGG16 cached features", features_table),
        ("Precision and XLA", compile_table),
        ("Backends", backends_table),
        ("Data preparation", lambda f: scaling_table(f, "data")),
        ("Training epoch", lambda f: scaling_table(f, "epochs")),
        ("Growth", growth_table),
        ("Not measured", failures),
    ]
    lines = [f"{figures['device']}: {figures['machine']}, devices {figures['devices']}"]
    for title, table in sections:
        frame = table(figures)
        if not frame.empty:
            lines += ["", title, frame.to_string()]
    return "\n".join(lines)


def _table(rows: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    """The `columns` of `rows` that are present, renamed; the first one is the index."""
    frame = pd.DataFrame(rows)
    present = [key for key in columns if key in frame]
    if not present:
        return pd.DataFrame()
    frame = frame[present].rename(columns=columns)
    return frame.set_index(frame.columns[0])
