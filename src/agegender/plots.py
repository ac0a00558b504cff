"""Figures for the book. Each function returns a matplotlib Figure and shows nothing by itself."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from agegender.data.cache import load_image
from agegender.data.labels import AGE_BANDS, GENDERS, RACES, age_band
from agegender.files import seeded_key

BAND_ORDER = [age_band(low) for low, _ in AGE_BANDS]


def readable_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``age band``, ``gender name`` and ``race name`` columns for plotting."""
    return table.assign(
        **{
            "age band": pd.Categorical(table["age"].map(age_band), BAND_ORDER, ordered=True),
            "gender name": table["gender"].map(dict(enumerate(GENDERS))),
            "race name": table["race"].map(dict(enumerate(RACES))).fillna("unknown"),
        }
    )


def label_distributions(split: pd.DataFrame) -> Figure:
    """Age by gender, and race by gender, of the images in the split."""
    table = readable_labels(split)
    figure, (ages, races) = plt.subplots(1, 2, figsize=(11, 3.6), width_ratios=(1.6, 1))
    sns.histplot(table, x="age", hue="gender name", binwidth=2, multiple="stack", ax=ages)
    ages.set(xlabel="age (years)", ylabel="images", title="Age by gender")
    unknown = ["unknown"] if (table["race name"] == "unknown").any() else []
    sns.countplot(table, y="race name", hue="gender name", order=[*RACES, *unknown], ax=races)
    races.set(xlabel="images", ylabel="", title="Race by gender")
    figure.tight_layout()
    return figure


def face_grid(
    images: Path, split: pd.DataFrame, *, per_band: int, seed: int = 0, size: int = 96
) -> Figure:
    """Rows of sample faces, one row per age band, titled with their labels."""
    table = readable_labels(split)
    figure, axes = plt.subplots(
        len(BAND_ORDER), per_band, figsize=(1.5 * per_band, 1.75 * 5), squeeze=False
    )
    for row, band in zip(axes, BAND_ORDER, strict=True):
        members = table[table["age band"] == band]
        chosen = members.loc[_hashed_order(members["file"], seed)[:per_band]]
        for ax, (_, face) in zip(row, chosen.iterrows(), strict=False):
            ax.imshow(load_image(images / face["file"], size))
            ax.set_title(f"{face['age']}, {face['gender name'][0]}", fontsize=9)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(band, fontsize=11)
    figure.tight_layout()
    return figure


def image_pairs(images: Path, pairs: pd.DataFrame, *, size: int = 96) -> Figure:
    """Byte-identical files side by side, each titled with its own labels.

    Args:
        images: the images folder.
        pairs: rows with ``file_a``, ``labels_a``, ``file_b``, ``labels_b``.
        size: pixels of each shown face.
    """
    if pairs.empty:
        figure, ax = plt.subplots(figsize=(4.2, 0.6))
        ax.text(0.5, 0.5, "No such pairs to show.", ha="center", va="center")
        ax.axis("off")
        return figure
    figure, axes = plt.subplots(len(pairs), 2, figsize=(4.2, 2.2 * len(pairs)), squeeze=False)
    for (left, right), (_, pair) in zip(axes, pairs.iterrows(), strict=True):
        for ax, side in ((left, "a"), (right, "b")):
            ax.imshow(load_image(images / pair[f"file_{side}"], size))
            ax.set_title(pair[f"labels_{side}"], fontsize=9)
            ax.axis("off")
    figure.tight_layout()
    return figure


def conflicting_pairs(manifest: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """Up to `n` duplicate groups with disagreeing labels, as pairs of their first two files."""
    conflicts = readable_labels(manifest[manifest["conflict"]].sort_values("file"))
    conflicts["labels"] = (
        conflicts["age"].astype(str)
        + " y, "
        + conflicts["gender name"]
        + ", "
        + conflicts["race name"]
    )
    firsts = conflicts.groupby("sha256").head(2).groupby("sha256")
    pairs = pd.DataFrame(
        {
            "file_a": firsts["file"].first(),
            "labels_a": firsts["labels"].first(),
            "file_b": firsts["file"].last(),
            "labels_b": firsts["labels"].last(),
        }
    )
    return pairs.loc[_hashed_order(pairs.index.to_series(), seed)[:n]].reset_index(drop=True)


def stratification(split: pd.DataFrame) -> pd.DataFrame:
    """Share of each age band x gender stratum that landed in train, val and test (in %)."""
    table = readable_labels(split)
    shares = (
        pd.crosstab([table["age band"], table["gender name"]], table["split"], normalize="index")
        * 100
    )
    return shares[["train", "val", "test"]].round(1)


def _hashed_order(keys: pd.Series, seed: int) -> pd.Index:
    """`keys`' index ordered by a hash of seed and key: a stable choice on every machine."""
    digests = keys.map(lambda key: seeded_key(seed, key))
    return pd.Index(digests.sort_values(kind="stable").index)


CURVES = (
    ("loss", "total loss"),
    ("age_mae", "age MAE (years)"),
    ("gender_accuracy", "gender accuracy"),
)


def learning_curves(histories: dict[str, pd.DataFrame]) -> Figure:
    """Loss, age MAE and gender accuracy per epoch; training solid, validation dashed.

    Several models share the axes, one colour each, so their curves compare at a glance; the
    fourth panel is the legend. A vertical dotted line marks where a model's fine-tuning stage
    begins. The loss and MAE axes are scaled to the epochs after the first, whose much larger
    values would flatten every other point (a first-epoch point may therefore lie off the top).
    """
    figure, grid = plt.subplots(2, 2, figsize=(10, 7.2))
    axes, legend_panel = grid.flat[: len(CURVES)], grid.flat[len(CURVES)]
    colours = sns.color_palette(n_colors=max(3, len(histories)))
    handles = []
    for colour, (name, history) in zip(colours, histories.items(), strict=False):
        _plot_history(axes, history, colour)
        handles.append(Line2D([], [], color=colour, linewidth=3, label=name))
    for ax, (metric, _) in zip(axes, CURVES, strict=True):
        ax.xaxis.get_major_locator().set_params(integer=True)
        if metric != "gender_accuracy":
            _scale_to_later_epochs(ax, metric, histories)
    handles += _line_style_handles(histories)
    legend_panel.axis("off")
    legend_panel.legend(handles=handles, loc="center", frameon=False, fontsize=11)
    figure.tight_layout()
    return figure


def comparison_curves(
    histories: dict[str, pd.DataFrame], best_epochs: dict[str, int | None] | None = None
) -> Figure:
    """Age MAE and gender accuracy per epoch, one row per model on its own epochs, so an 8-epoch
    and a 40-epoch run are equally readable; each metric's axis is shared by every row and holds
    every point (the first epochs included). Training solid, validation dashed, the kept (best)
    epoch's validation point ringed, and a dotted line where a fine-tuning stage begins."""
    metrics = CURVES[1:]  # the total loss is a weighted sum of the two, so it adds nothing here
    best_epochs = best_epochs or {}
    figure, grid = plt.subplots(
        len(histories),
        len(metrics),
        figsize=(10, 2.4 * len(histories) + 0.8),
        sharey="col",
        squeeze=False,
    )
    colours = sns.color_palette(n_colors=max(3, len(histories)))
    for row, colour, (name, history) in zip(grid, colours, histories.items(), strict=False):
        _plot_history(row, history, colour, curves=metrics)
        for ax, (metric, label) in zip(row, metrics, strict=True):
            ax.set(title=f"{name}: {label}", xlabel="epoch" if ax in grid[-1] else "")
            ax.xaxis.get_major_locator().set_params(integer=True)
            best = best_epochs.get(name)
            if best is not None:
                kept = history.loc[history["epoch"] == best, f"val_{metric}"]
                ax.plot(best + 1, kept, marker="o", markersize=9, fillstyle="none", color="black")
    grid[0, 0].set_ylim(bottom=0)
    kept_handle = Line2D([], [], marker="o", fillstyle="none", color="black", linestyle="none")
    handles = [*_line_style_handles(histories), kept_handle]
    handles[-1].set_label("kept epoch")
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    return figure


def _fine_tunes(history: pd.DataFrame) -> bool:
    return "stage" in history and (history["stage"] == "fine_tune").any()


def _plot_history(axes, history: pd.DataFrame, colour, curves=CURVES) -> None:
    """One model's training and validation curves on each of the `curves` axes."""
    epochs = history["epoch"] + 1
    for ax, (metric, label) in zip(axes, curves, strict=True):
        ax.plot(epochs, history[metric], color=colour)
        ax.plot(epochs, history[f"val_{metric}"], color=colour, linestyle="--")
        ax.set(title=label, xlabel="epoch")
        if _fine_tunes(history):
            start = history.loc[history["stage"] == "fine_tune", "epoch"].min() + 0.5
            ax.axvline(start, color=colour, linestyle=":", linewidth=1)


def _scale_to_later_epochs(ax, metric: str, histories: dict[str, pd.DataFrame]) -> None:
    """Fit the y axis to every model's `metric` values after its first epoch."""
    later = [
        h.loc[h["epoch"] > h["epoch"].min(), [metric, f"val_{metric}"]].to_numpy()
        for h in histories.values()
    ]
    later = np.concatenate([v.ravel() for v in later])
    if np.isfinite(later).any():
        ax.set_ylim(bottom=0, top=np.nanmax(later) * 1.05)


def _line_style_handles(histories: dict[str, pd.DataFrame]) -> list[Line2D]:
    """Legend entries for what the solid, dashed and (where used) dotted lines mean."""
    handles = [
        Line2D([], [], color="grey", label="training"),
        Line2D([], [], color="grey", linestyle="--", label="validation"),
    ]
    if any(_fine_tunes(h) for h in histories.values()):
        handles.append(Line2D([], [], color="grey", linestyle=":", label="fine-tuning starts"))
    return handles


def predicted_vs_true(predictions: pd.DataFrame) -> Figure:
    """Predicted against true age for every test image, with the line of perfect predictions."""
    figure, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.scatter(predictions["age_true"], predictions["age_pred"], s=6, alpha=0.3, linewidths=0)
    top = max(predictions["age_true"].max(), predictions["age_pred"].max()) + 2
    ax.plot([0, top], [0, top], color="black", linewidth=1, label="perfect")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="true age (years)", ylabel="predicted age (years)")
    ax.legend(loc="upper left")
    figure.tight_layout()
    return figure


def confusion(predictions: pd.DataFrame) -> Figure:
    """Gender confusion matrix: counts, and the share of each true class."""
    counts = pd.crosstab(
        predictions["gender_true"].map(dict(enumerate(GENDERS))),
        predictions["gender_pred"].map(dict(enumerate(GENDERS))),
    )
    counts = counts.reindex(index=list(GENDERS), columns=list(GENDERS), fill_value=0)
    shares = counts.div(counts.sum(axis=1).replace(0, 1), axis=0)
    labels = counts.astype(str) + "\n" + (shares * 100).round(1).astype(str) + " %"
    figure, ax = plt.subplots(figsize=(3.8, 3.2))
    sns.heatmap(shares, annot=labels, fmt="", cmap="Blues", vmin=0, vmax=1, cbar=False, ax=ax)
    ax.set(xlabel="predicted", ylabel="true")
    figure.tight_layout()
    return figure


def worst_errors(images: Path, predictions: pd.DataFrame, *, n: int = 8, size: int = 96) -> Figure:
    """The test faces with the largest age errors, titled true -> predicted."""
    errors = (predictions["age_pred"] - predictions["age_true"]).abs()
    worst = predictions.loc[errors.sort_values(ascending=False, kind="stable").index[:n]]
    columns = min(n, 4)  # four to a row, so the titles stay readable on a book page
    rows = -(-n // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.6 * rows), squeeze=False)
    for ax, (_, row) in zip(axes.flat, worst.iterrows(), strict=False):
        ax.imshow(load_image(images / row["file"], size))
        gender = "female" if row["gender_pred"] else "male"
        ax.set_title(
            f"{row['age_true']:.0f} → {row['age_pred']:.0f} years\npredicted {gender}", fontsize=11
        )
    for ax in axes.flat:
        ax.axis("off")
    figure.tight_layout()
    return figure


def pipeline_bars(pipeline: list[dict]) -> Figure:
    """Training images/s per model on synthetic in-memory batches and on the real cached images,
    one panel per image size, with the real / synthetic ratio written above each pair."""
    table = pd.DataFrame(pipeline)
    sizes = sorted(table["size"].unique())
    figure, axes = plt.subplots(
        1, len(sizes), figsize=(5.2 * len(sizes), 3.8), squeeze=False, sharey=False
    )
    for ax, size in zip(axes[0], sizes, strict=True):
        rows = table[table["size"] == size].reset_index(drop=True)
        positions = np.arange(len(rows))
        ax.bar(positions - 0.2, rows["synthetic_images_per_s"], 0.4, label="synthetic input")
        ax.bar(positions + 0.2, rows["real_images_per_s"], 0.4, label="real cached images")
        for x, (_, row) in zip(positions, rows.iterrows(), strict=True):
            top = max(row["synthetic_images_per_s"], row["real_images_per_s"])
            ax.annotate(f"{row['ratio']:.2f}", (x, top), ha="center", va="bottom", fontsize=9)
        ax.set_xticks(positions, [m.replace(", ", "\n") for m in rows["model"]], fontsize=8)
        ax.set(title=f"{size} px", ylabel="training images/s")
        ax.margins(y=0.12)
    axes[0][0].legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    return figure


def compile_bars(compiled: list[dict]) -> Figure:
    """Training images/s per precision and XLA setting, one bar group per model and size."""
    table = pd.DataFrame(compiled)
    table["setting"] = table["precision"] + table["xla"].map({True: " + XLA", False: ""})
    table["model"] = table["model"] + ", " + table["size"].astype(str) + " px"
    figure, ax = plt.subplots(figsize=(10, 0.35 * len(table) + 1.2))
    sns.barplot(table, y="model", x="images_per_s", hue="setting", ax=ax, orient="h", errorbar=None)
    ax.set(xlabel="training images/s (synthetic input)", ylabel="")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    figure.tight_layout()
    return figure


def scaling_lines(scaling: dict) -> Figure:
    """Time against images (log-log), for data preparation per size and one custom CNN epoch,
    each line labelled with its fitted growth exponent."""
    figure, (prep, epoch) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, rows, title in (
        (prep, scaling["data"], "Decoding into the cache"),
        (epoch, scaling["epochs"], "One custom CNN training epoch"),
    ):
        table = pd.DataFrame(rows)
        for size, group in table.groupby("size"):
            if group["images"].nunique() < 2:
                continue
            group = group.sort_values("images")
            slope = np.polyfit(np.log(group["images"]), np.log(group["seconds"]), 1)[0]
            ax.plot(
                group["images"], group["seconds"], marker="o", label=f"{size} px (b = {slope:.2f})"
            )
        ax.set(xscale="log", yscale="log", xlabel="images", ylabel="seconds", title=title)
        ax.legend(fontsize=8, title="time ∝ images^b", title_fontsize=8)
    figure.tight_layout()
    return figure


def data_size_curve(table: pd.DataFrame, final: dict | None = None) -> Figure:
    """Age MAE and gender accuracy against training images (log axis), from
    `agegender.results.studies.data_size_table`; `final` (``images``, ``age MAE``,
    ``gender accuracy``, ``label``) adds the profile's own full run as a separate marker."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    split = "validation" if set(table["split"]) == {"val"} else "test"
    for ax, column in zip(axes, ("age MAE", "gender accuracy"), strict=True):
        ax.errorbar(
            table["training images"],
            table[column],
            yerr=table[f"{column} sd"].fillna(0),
            marker="o",
            capsize=3,
            label="same epoch budget (bars: sd over seeds)",
        )
        if final is not None:
            ax.plot(
                final["images"],
                final[column],
                marker="*",
                markersize=12,
                linestyle="none",
                color="black",
                label=final["label"],
            )
        ax.set(xscale="log", xlabel="training images", ylabel=f"{split} {column}")
        ax.set_xticks(table["training images"].tolist() + ([final["images"]] if final else []))
        ax.get_xaxis().set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.minorticks_off()
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    return figure
