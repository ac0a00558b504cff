"""Figures for the book. Each function returns a matplotlib Figure and shows nothing by itself."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, NullLocator

from agegender.data.cache import load_image
from agegender.data.labels import AGE_BANDS, GENDERS, RACES, age_band
from agegender.files import seeded_key

BAND_ORDER = [age_band(low) for low, _ in AGE_BANDS]

# Font sizes that stay legible when a book page shrinks a figure to a phone's width (about 390
# px, so a 7-inch figure drawn at 100 dpi is shown at under half its size), yet not oversized on
# a desktop page: each figure is drawn inside ``plt.rc_context(LEGIBLE)``.
LEGIBLE = {
    "font.size": 14,
    "axes.titlesize": 15,
    "axes.labelsize": 14,
    "xtick.labelsize": 13,
    "ytick.labelsize": 13,
    "legend.fontsize": 13,
    "legend.title_fontsize": 13,
}


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
    """Age by gender (above), and race by gender (below), of the images in the split."""
    table = readable_labels(split)
    unknown = ["unknown"] if (table["race name"] == "unknown").any() else []
    with plt.rc_context(LEGIBLE):
        figure, (ages, races) = plt.subplots(2, 1, figsize=(8, 7.4), height_ratios=(1.3, 1))
        sns.histplot(
            table,
            x="age",
            hue="gender name",
            hue_order=list(GENDERS),
            binwidth=2,
            multiple="stack",
            ax=ages,
        )
        ages.set(xlabel="age (years)", ylabel="images", title="Age by gender")
        sns.countplot(
            table,
            y="race name",
            hue="gender name",
            hue_order=list(GENDERS),
            order=[*RACES, *unknown],
            ax=races,
        )
        races.set(xlabel="images", ylabel="", title="Race by gender")
        for ax in (ages, races):  # the genders speak for themselves: no column name as title
            if ax.get_legend() is not None:
                ax.get_legend().set_title(None)
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
            ax.set_title(f"{face['age']}, {face['gender name'][0]}", fontsize=12)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(band, fontsize=13)
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
        return message_figure("No such pairs to show.")
    figure, axes = plt.subplots(len(pairs), 2, figsize=(4.2, 2.2 * len(pairs)), squeeze=False)
    for (left, right), (_, pair) in zip(axes, pairs.iterrows(), strict=True):
        for ax, side in ((left, "a"), (right, "b")):
            ax.imshow(load_image(images / pair[f"file_{side}"], size))
            ax.set_title(pair[f"labels_{side}"], fontsize=9)
            ax.axis("off")
    figure.tight_layout()
    return figure


def message_figure(text: str) -> Figure:
    """A small figure holding one sentence, where there is nothing to plot."""
    figure, ax = plt.subplots(figsize=(7, 0.8))
    ax.text(0.5, 0.5, textwrap.fill(text, 80), ha="center", va="center", fontsize=11)
    ax.axis("off")
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
    """Per age band and gender stratum, its images and the share of them that landed in train,
    val and test (as ``70.1 %``)."""
    table = readable_labels(split)
    strata = [table["age band"], table["gender name"]]
    shares = pd.crosstab(strata, table["split"], normalize="index")[["train", "val", "test"]]
    shown = (shares * 100).map(lambda share: f"{share:.1f} %")
    shown.insert(0, "images", pd.crosstab(strata, table["split"]).sum(axis=1).map("{:,}".format))
    shown.index = [f"{band}, {gender}" for band, gender in shown.index]
    return shown.rename_axis(index=None, columns="age band, gender")


def _hashed_order(keys: pd.Series, seed: int) -> pd.Index:
    """`keys`' index ordered by a hash of seed and key: a stable choice on every machine."""
    digests = keys.map(lambda key: seeded_key(seed, key))
    return pd.Index(digests.sort_values(kind="stable").index)


# The learning curves' metrics; no total loss, a weighted sum of the two that adds nothing.
CURVES = (
    ("age_mae", "age MAE (years)"),
    ("gender_accuracy", "gender accuracy"),
)
# Each metric's fixed axis (low, high, step), the same in every chapter so that figures compare
# at a glance; widened to a multiple of the step only to hold a point outside it, so no point is
# ever hidden (a first epoch included).
CURVE_LIMITS = {"age_mae": (0.0, 20.0, 5.0), "gender_accuracy": (0.5, 1.0, 0.05)}


def learning_curves(history: pd.DataFrame, best_epoch: int | None = None) -> Figure:
    """One model's age MAE and gender accuracy per epoch: `comparison_curves` with one row, on
    the same fixed axes in every chapter. `best_epoch` (0-based, like ``history["epoch"]``) is the
    kept epoch, ringed."""
    return _curves({"": history}, {"": best_epoch})


def comparison_curves(
    histories: dict[str, pd.DataFrame], best_epochs: dict[str, int | None] | None = None
) -> Figure:
    """Age MAE and gender accuracy per epoch, one row per model on its own epochs, so an 8-epoch
    and a 40-epoch run are equally readable; each metric has one fixed axis (`CURVE_LIMITS`),
    shared by every row and widened only to hold every point (the first epochs included).
    Training solid, validation dashed, the kept (best) epoch's validation point ringed, and a
    dotted line where a fine-tuning stage begins. No total-loss panel: the total loss is a
    weighted sum of the two."""
    return _curves(histories, best_epochs or {})


def _curves(histories: dict[str, pd.DataFrame], best_epochs: dict[str, int | None]) -> Figure:
    """One row of curves per model, each axis titled with the model's name (none for ``""``)
    and labelled with its metric."""
    with plt.rc_context(LEGIBLE):
        figure, grid = plt.subplots(
            len(histories),
            len(CURVES),
            figsize=(7, 2.9 * len(histories) + 0.8),
            sharey="col",
            squeeze=False,
        )
        colours = sns.color_palette(n_colors=max(3, len(histories)))
        for row, colour, (name, history) in zip(grid, colours, histories.items(), strict=False):
            epochs = history["epoch"] + 1
            for ax, (metric, label) in zip(row, CURVES, strict=True):
                ax.plot(epochs, history[metric], color=colour)
                ax.plot(epochs, history[f"val_{metric}"], color=colour, linestyle="--")
                if _fine_tunes(history):
                    start = history.loc[history["stage"] == "fine_tune", "epoch"].min() + 0.5
                    ax.axvline(start, color=colour, linestyle=":", linewidth=1.5)
                best = best_epochs.get(name)
                if best is not None:
                    kept = history.loc[history["epoch"] == best, f"val_{metric}"].to_numpy()
                    ax.plot(
                        [best + 1] * len(kept),
                        kept,
                        marker="o",
                        markersize=10,
                        fillstyle="none",
                        markeredgewidth=1.5,
                        color="black",
                    )
                ax.set(title=name, ylabel=label, xlabel="epoch" if ax in grid[-1] else "")
                ax.xaxis.get_major_locator().set_params(integer=True)
                ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 5, 10]))
        for column, (metric, _) in zip(grid.T, CURVES, strict=True):
            column[0].set_ylim(_curve_limits(metric, histories.values()))
        handles = _line_style_handles(histories)
        if any(best_epochs.get(name) is not None for name in histories):
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="o",
                    fillstyle="none",
                    color="black",
                    linestyle="none",
                    markersize=10,
                    label="kept epoch",
                )
            )
        ncol = len(handles) if len(handles) <= 3 else 2  # two short rows fit a phone
        figure.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False)
        legend_inches = 0.05 + 0.28 * -(-len(handles) // ncol)
        figure.tight_layout(rect=(0, legend_inches / figure.get_figheight(), 1, 1))
    return figure


def _curve_limits(metric: str, histories) -> tuple[float, float]:
    """`CURVE_LIMITS`' fixed axis for `metric`, widened to a multiple of its step (with a little
    room) where a training or validation point of any history lies outside it."""
    low, high, step = CURVE_LIMITS[metric]
    values = np.concatenate(
        [h[[metric, f"val_{metric}"]].to_numpy(dtype=float).ravel() for h in histories]
    )
    values = values[np.isfinite(values)]
    if values.size and values.min() < low:
        low = step * np.floor(values.min() / step - 0.1)
    if values.size and values.max() > high:
        high = step * np.ceil(values.max() / step + 0.1)
    return round(float(low), 6), round(float(high), 6)  # 0.3, not 0.30000000000000004


def _fine_tunes(history: pd.DataFrame) -> bool:
    return "stage" in history and (history["stage"] == "fine_tune").any()


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
    """Predicted against true age for every test image, with the line of perfect predictions.

    The age output is unbounded, so the axes reach down to the lowest prediction; when some are
    negative, a dotted line marks 0 years and the legend says how many lie below it."""
    true, predicted = predictions["age_true"], predictions["age_pred"]
    below = int((predicted < 0).sum())
    low = min(0.0, float(predicted.min()) - 2 if below else 0.0)
    top = max(true.max(), predicted.max()) + 2
    with plt.rc_context(LEGIBLE):
        figure, ax = plt.subplots(figsize=(5, 4.8))
        ax.scatter(true, predicted, s=8, alpha=0.3, linewidths=0)
        ax.plot([low, top], [low, top], color="black", linewidth=1, label="perfect")
        if below:
            ax.axhline(
                0,
                color="tab:red",
                linestyle=":",
                linewidth=1.5,
                label=f"{below} prediction{'s' if below != 1 else ''} below 0 years",
            )
        ax.set(
            xlim=(low, top),
            ylim=(low, top),
            xlabel="true age (years)",
            ylabel="predicted age (years)",
        )
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
    """The test faces with the largest age errors, each titled with its true → predicted age
    and its true → predicted gender."""
    errors = (predictions["age_pred"] - predictions["age_true"]).abs()
    worst = predictions.loc[errors.sort_values(ascending=False, kind="stable").index[:n]]
    columns = min(n, 4)  # four to a row, so the titles stay readable on a phone
    rows = -(-n // columns)
    with plt.rc_context(LEGIBLE):
        figure, axes = plt.subplots(
            rows, columns, figsize=(2.1 * columns, 2.75 * rows + 0.5), squeeze=False
        )
        for ax, (_, row) in zip(axes.flat, worst.iterrows(), strict=False):
            ax.imshow(load_image(images / row["file"], size))
            true, predicted = GENDERS[int(row["gender_true"])], GENDERS[int(row["gender_pred"])]
            ax.set_title(
                f"{row['age_true']:.0f} → {row['age_pred']:.0f} years\n{true} → {predicted}",
                fontsize=13,
            )
        for ax in axes.flat:
            ax.axis("off")
        figure.suptitle("true → predicted age and gender", fontsize=13)
        figure.tight_layout()
    return figure


def pipeline_bars(pipeline: list[dict]) -> Figure:
    """Training images/s per model on synthetic in-memory batches and on the real cached images,
    one panel per image size (stacked), with the real / synthetic ratio written above each pair."""
    table = pd.DataFrame(pipeline)
    sizes = sorted(table["size"].unique())
    with plt.rc_context(LEGIBLE):
        figure, axes = plt.subplots(len(sizes), 1, figsize=(7, 3.6 * len(sizes)), squeeze=False)
        for ax, size in zip(axes[:, 0], sizes, strict=True):
            rows = table[table["size"] == size].reset_index(drop=True)
            positions = np.arange(len(rows))
            ax.bar(positions - 0.2, rows["synthetic_images_per_s"], 0.4, label="synthetic input")
            ax.bar(positions + 0.2, rows["real_images_per_s"], 0.4, label="real cached images")
            for x, (_, row) in zip(positions, rows.iterrows(), strict=True):
                top = max(row["synthetic_images_per_s"], row["real_images_per_s"])
                ax.annotate(f"{row['ratio']:.2f}", (x, top), ha="center", va="bottom")
            ax.set_xticks(positions, [m.replace(", ", "\n") for m in rows["model"]], fontsize=10.5)
            ax.set(title=f"{size} px", ylabel="training images/s")
            ax.margins(y=0.15)
        figure.legend(*axes[0][0].get_legend_handles_labels(), loc="upper center", ncol=2)
        figure.tight_layout(rect=(0, 0, 1, 1 - 0.45 / figure.get_figheight()))
    return figure


def compile_bars(compiled: list[dict]) -> Figure:
    """Training images/s per precision and XLA setting, one bar group per model and size."""
    table = pd.DataFrame(compiled)
    table["setting"] = table["precision"] + table["xla"].map({True: " + XLA", False: ""})
    table["model"] = (table["model"] + ", " + table["size"].astype(str) + " px").map(
        lambda name: "\n".join(textwrap.fill(part, 22) for part in name.split(", "))
    )  # one line per part, long parts wrapped, rather than squeezing the bars
    groups, settings = table["model"].nunique(), table["setting"].nunique()
    with plt.rc_context(LEGIBLE):
        figure, ax = plt.subplots(figsize=(7, (0.22 * settings + 0.35) * groups + 1.6))
        sns.barplot(
            table, y="model", x="images_per_s", hue="setting", ax=ax, orient="h", errorbar=None
        )
        ax.set(xlabel="training images/s (synthetic input)", ylabel="")
        ax.tick_params(axis="y", labelsize=11)
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
        figure.tight_layout()
    return figure


def scaling_lines(scaling: dict) -> Figure:
    """Time against images (log-log), for data preparation per size (above) and one custom CNN
    epoch (below), each line labelled with its fitted growth exponent."""
    with plt.rc_context(LEGIBLE):
        figure, (prep, epoch) = plt.subplots(2, 1, figsize=(7, 7.4))
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
                    group["images"],
                    group["seconds"],
                    marker="o",
                    label=f"{size} px (b = {slope:.2f})",
                )
            ax.set(xscale="log", yscale="log", xlabel="images", ylabel="seconds", title=title)
            ax.set_xticks(sorted(table["images"].unique()))  # the measured sizes, not 3 x 10^3
            ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:,.0f}"))
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 1, 2, 5, 10, 20...
            ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.xaxis.set_minor_locator(NullLocator())
            ax.legend(title="time ∝ images^b")
        figure.tight_layout()
    return figure


def data_size_curve(table: pd.DataFrame | str, final: dict | None = None) -> Figure:
    """Age MAE (above) and gender accuracy (below) against training images (log axis), from
    `agegender.results.studies.data_size_table`; `final` (``images``, ``age MAE``,
    ``gender accuracy``, ``label``) adds the profile's own full run as a separate marker. Where
    the study has no results (`table` is the sentence saying so), the figure says it."""
    if isinstance(table, str):
        return message_figure(table)
    split = "validation" if set(table["split"]) == {"val"} else "test"
    with plt.rc_context(LEGIBLE):
        figure, axes = plt.subplots(2, 1, figsize=(7, 7.4), sharex=True)
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
                    markersize=14,
                    linestyle="none",
                    color="black",
                    label=final["label"],
                )
            ax.set(xscale="log", ylabel=f"{split} {column}")
            ax.set_xticks(table["training images"].tolist() + ([final["images"]] if final else []))
            ax.get_xaxis().set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:,.0f}"))
            ax.minorticks_off()
        axes[1].set(xlabel="training images")
        figure.legend(*axes[0].get_legend_handles_labels(), loc="lower center", frameon=False)
        figure.tight_layout(rect=(0, 0.65 / figure.get_figheight(), 1, 1))
    return figure


def group_photo(image, message: str = "") -> Figure:
    """A photo with the faces found in it drawn on (`agegender.predict.draw_faces`); where there
    is no photo (None), a figure saying `message`."""
    if image is None:
        return message_figure(message or "No group photo to show.")
    width, height = image.size
    figure, ax = plt.subplots(figsize=(9, 9 * height / width + 0.1))
    ax.imshow(image)
    ax.axis("off")
    figure.tight_layout(pad=0.1)
    return figure


def crop_comparison(rows: pd.DataFrame | None, message: str = "") -> Figure:
    """The crops cut out of photos against the original crops, one row per face of
    `agegender.using`'s predictions (``found``, ``crop_iou``, ``age_original``,
    ``age_recovered``, ``female_original``, ``female_recovered``): the IoU of their regions
    (above), and the model's age on the recovered crop against its age on the original (below),
    marked where its gender answers differ. Where there are no rows (None) or no face was found,
    a figure saying `message`."""
    if rows is None or "crop_iou" not in rows:
        return message_figure(message or "No face was found: nothing to compare.")
    found = rows[rows["found"].astype(bool)]
    if found.empty:
        return message_figure(message or "No face was found: nothing to compare.")
    with plt.rc_context(LEGIBLE):
        figure, (overlap, ages) = plt.subplots(2, 1, figsize=(7, 8.6), height_ratios=(1, 1.4))
        low = min(0.5, np.floor(found["crop_iou"].min() * 20) / 20)  # from 0.5, or lower
        bins = np.linspace(low, 1, round((1 - low) / 0.0125) + 1)
        overlap.hist(found["crop_iou"], bins=bins, color="tab:blue")
        median = float(found["crop_iou"].median())
        overlap.axvline(median, color="black", linestyle="--", label=f"median {median:.3f}")
        overlap.set(xlabel="IoU of the recovered crop with the original", ylabel="faces")
        overlap.yaxis.set_major_locator(MaxNLocator(integer=True))
        overlap.legend(loc="upper left")
        differ = (found["female_original"] >= 0.5) != (found["female_recovered"] >= 0.5)
        for subset, label, style in (
            (found[~differ], "same gender answer", {"color": "tab:blue", "marker": "o"}),
            (found[differ], "gender answer differs", {"color": "tab:red", "marker": "x"}),
        ):
            ages.scatter(
                subset["age_original"],
                subset["age_recovered"],
                s=18,
                alpha=0.6,
                label=label,
                **style,
            )
        values = pd.concat([found["age_original"], found["age_recovered"]])
        low, high = min(0.0, float(values.min()) - 2), float(values.max()) + 2
        ages.plot([low, high], [low, high], color="black", linewidth=1, label="the same age")
        ages.set(
            xlim=(low, high),
            ylim=(low, high),
            xlabel="age on the original crop (years)",
            ylabel="age on the recovered crop (years)",
        )
        ages.legend(loc="upper left")
        figure.tight_layout()
    return figure


def margin_curve(
    table: pd.DataFrame | None, reference: dict | None = None, message: str = ""
) -> Figure:
    """Age MAE (above) and gender accuracy (below) against the crop's margin (1: UTKFace's
    framing, dotted), from `agegender.faces.synthetic.margins_of`; `reference` (``age_mae``,
    ``gender_accuracy``) adds the same faces' original crops as a dashed line. Where there is no
    table (None), a figure saying `message`."""
    if table is None or table.empty:
        return message_figure(message or "No margin was tried.")
    with plt.rc_context(LEGIBLE):
        figure, axes = plt.subplots(2, 1, figsize=(7, 7.4), sharex=True)
        for ax, (column, label) in zip(axes, CURVES, strict=True):
            ax.plot(table["margin"], table[column], marker="o", label="recovered crops")
            if reference is not None and reference.get(column) is not None:
                ends = [table["margin"].min(), table["margin"].max()]  # in the axis's range
                value = reference[column]
                ax.plot(ends, [value, value], color="grey", linestyle="--", label="original crops")
            ax.axvline(1.0, color="black", linestyle=":", linewidth=1.5)
            ax.set(ylabel=label)
            ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 5, 10]))
        axes[1].set(xlabel="margin (crop side / UTKFace's)")
        axes[1].set_xticks(table["margin"].tolist())
        axes[1].xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        axes[0].legend(loc="best")
        figure.tight_layout()
    return figure
