"""Read `agegender bench` results (``results/bench/<device>.json``) and lay them out as tables."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from agegender.errors import AgegenderError


def load(folder: Path) -> dict[str, dict]:
    """Every bench results file in `folder`, by device (``{"cpu": {...}, "gpu": {...}}``)."""
    found = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            found[path.stem] = json.loads(path.read_text())
        except ValueError as error:
            raise AgegenderError(f"{path} is not a bench results file ({error}).") from error
    return found


def pipeline_table(figures: dict) -> pd.DataFrame:
    """Training images/s on real cached images and on synthetic in-memory batches, per model."""
    return _table(
        figures["pipeline"],
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
        figures["compile"],
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
    return _table(figures["backends"], columns)


def scaling_table(figures: dict, which: str) -> pd.DataFrame:
    """``which="data"``: decoding into the cache; ``"epochs"``: one custom CNN epoch."""
    columns = {"size": "px", "images": "images", "seconds": "seconds", "images_per_s": "images/s"}
    if which == "data":
        columns["cache_mib"] = "cache MiB"
    columns |= {"peak_anon_mib": "peak heap MiB", "peak_rss_mib": "peak resident MiB"}
    return _table(figures["scaling"][which], columns)


def growth_table(figures: dict) -> pd.DataFrame:
    """The fitted exponents b of ``time = a * x**b`` (1: linear)."""
    rows = [{"what": what, **fit} for what, fit in figures["scaling"]["growth"].items()]
    return _table(rows, {"what": "time of", "exponent": "exponent b", "r2": "R²"})


def memory_table(figures: dict) -> pd.DataFrame:
    """Peak memory of each training measurement and of building the whole cache, per size."""
    rows = [{"what": f"training {row['model']}", **row} for row in figures["pipeline"]] + [
        {"what": "data preparation (decode into the cache)", **row}
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


def main_figures(folder: Path) -> dict:
    """The bench results the appendix shows: the GPU's when there are some, else the CPU's.

    Raises:
        AgegenderError: when `folder` holds none (run `agegender bench` first).
    """
    found = load(folder)
    if not found:
        raise AgegenderError(
            f"No bench results in {folder}: run `agegender bench` (or `make bench`) first."
        )
    return found.get("gpu") or found.get("cpu") or next(iter(found.values()))


def findings(figures: dict) -> dict[str, str]:
    """The numbers the appendix states in its text, formatted; a figure not measured is absent."""
    found = {"target_ratio": f"{figures['targets']['pipeline_ratio']:.2f}"}
    found["target_speedup"] = f"{figures['targets']['feature_speedup']:.0f}"
    if figures["pipeline"]:
        worst = min(figures["pipeline"], key=lambda row: row["ratio"])
        found["lowest_ratio"] = f"{worst['ratio']:.2f}"
        found["lowest_ratio_model"] = f"{worst['model']} at {worst['size']} px"
    speedups = sorted(row["speedup"] for row in figures["features"] if "speedup" in row)
    if speedups:
        found["feature_speedup"] = f"{speedups[0]:,.0f} to {speedups[-1]:,.0f}"
    rate = {
        (row["model"], row["size"], row["precision"], row["xla"]): row["images_per_s"]
        for row in figures["compile"]
    }
    sizes = figures["parameters"]["sizes"]
    found["first_size"], found["last_size"] = str(sizes[0]), str(sizes[-1])
    comparisons = [  # (key, model, size, precision, XLA) against float32 without XLA
        (key, model, size, *setting)
        for model, name in (("custom_cnn", "cnn"), ("resnet50_finetune, stage 1", "resnet"))
        for key, size, setting in (
            (f"xla_{name}", sizes[0], ("float32", True)),
            (f"bf16_{name}", sizes[0], ("mixed_bfloat16", False)),
            (f"xla_{name}_last", sizes[-1], ("float32", True)),
        )
    ]
    for key, model, size, precision, xla in comparisons:
        plain, other = (
            rate.get((model, size, "float32", False)),
            rate.get((model, size, precision, xla)),
        )
        if plain and other:
            found[key] = f"{other / plain:.2f}"
    keras_layers = [row for row in figures["compile"] if "RandomRotation" in row["model"]]
    after = rate.get(("custom_cnn", sizes[0], "float32", True))
    if keras_layers and after:
        found["augmentation_speedup"] = f"{after / keras_layers[0]['images_per_s']:.2f}"
    for key, prefix in (
        ("prep_exponent", "data preparation vs images"),
        ("epoch_exponent", "custom_cnn epoch vs images"),
    ):
        exponents = sorted(
            fit["exponent"]
            for what, fit in figures["scaling"]["growth"].items()
            if what.startswith(prefix)
        )
        if exponents:
            found[key] = " to ".join(
                dict.fromkeys(f"{b:.2f}" for b in (exponents[0], exponents[-1]))
            )
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
    from agegender.models import MODEL_NAMES
    from agegender.training import default_jit_compile, default_precision

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
        for model in MODEL_NAMES
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
        [{"part": m["part"], "what": m["label"], "why": m["error"]} for m in rows],
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
