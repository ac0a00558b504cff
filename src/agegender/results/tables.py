"""The book's tables, from runs read by `agegender.results.store` (the comparison never retrains).

Each takes runs by name (models and off-the-shelf peers alike, where it makes sense) and returns
a `pandas.DataFrame` or a sentence. Keras-free.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pandas as pd
from pandas.io.formats.style import Styler

from agegender.data.labels import GENDERS, RACES
from agegender.errors import AgegenderError
from agegender.evaluation import METRICS
from agegender.provenance import weights_words
from agegender.results.store import RunResults

if TYPE_CHECKING:
    from agegender.results.summary import MarkdownText

METRIC_LABELS = {
    "age_mae": "age MAE (years)",
    "age_rmse": "age RMSE (years)",
    "age_cs5": "CS@5 (share within 5 years)",
    "age_mean_error": "age mean error (years)",
    "gender_accuracy": "gender accuracy",
    "gender_auc": "gender ROC AUC",
}

DIGITS = {
    "age_mae": 2,
    "age_rmse": 2,
    "age_cs5": 3,
    "age_mean_error": 2,
    "gender_accuracy": 3,
    "gender_auc": 3,
}


def metrics_table(run: RunResults) -> pd.DataFrame:
    """Every test metric of one run with its 95% bootstrap interval, one row per metric."""
    intervals, overall = run.metrics["confidence_intervals"], run.metrics["overall"]
    rows = {}
    for m in METRICS:
        ci = intervals.get(m)
        rows[METRIC_LABELS[m]] = {
            "value": f"{overall[m]:.{DIGITS[m]}f}",
            "95% CI": f"[{ci['low']:.{DIGITS[m]}f}, {ci['high']:.{DIGITS[m]}f}]" if ci else "",
        }
    return pd.DataFrame(rows).T.rename_axis(
        index=None, columns=f"{run.name}, {overall['n']:,} test images"
    )


def check_same_test_images(runs: dict[str, RunResults]) -> None:
    """Refuse to compare runs that were tested on different images.

    Raises:
        AgegenderError: naming each run's test-image count and row checksum.
    """
    tested = {name: run.provenance["parameters"]["data"]["test"] for name, run in runs.items()}
    if len({t["rows_sha256"] for t in tested.values()}) > 1:
        listing = "; ".join(
            f"{name}: {t['images']} images ({t['rows_sha256'][:12]})" for name, t in tested.items()
        )
        raise AgegenderError(
            f"These runs were tested on different images, so they cannot be compared: {listing}. "
            "Run them again with the same profile (max_eval_images and seed)."
        )


HEADLINE = {
    "age_mae": "age MAE ± 95% CI",
    "age_cs5": "CS@5",
    "gender_accuracy": "gender accuracy ± 95% CI",
    "gender_auc": "gender AUC",
}


def headline_table(runs: dict[str, RunResults]) -> pd.DataFrame:
    """The test metrics a reader compares first, one row per run: ``value ± half-width``.

    Age MAE (years) and gender accuracy carry their 95% bootstrap intervals; CS@5 (share of ages
    within five years) and ROC AUC their value. The last column says what each run started from.
    Every run was tested on the same images (`check_same_test_images`; `protocol` says how many).
    """
    rows = {}
    for name, run in runs.items():
        intervals, overall = run.metrics["confidence_intervals"], run.metrics["overall"]
        rows[name] = {
            label: _with_interval(intervals[m], DIGITS[m])
            if "CI" in label
            else f"{overall[m]:.{DIGITS[m]}f}"
            for m, label in HEADLINE.items()
        }
        rows[name]["weights"] = weights_tag(run)
    return pd.DataFrame(rows).T.rename_axis(index=None, columns="model")


GROUPINGS = {"age_band": "age band", "race": "race", "gender": "gender"}
GROUP_NAMES = {"race": RACES, "gender": GENDERS}  # a group stored as its label 0-4 or 0/1
NO_VALUE = "–"  # noqa: RUF001 - an en dash: no value, said in the table's caption
# The group tables the comparison shows, in order (`group_tables`).
COMPARED = (
    ("age_band", "age_mae"),
    ("age_band", "gender_accuracy"),
    ("race", "age_mae"),
    ("race", "gender_accuracy"),
    ("gender", "gender_accuracy"),
)
SUMMARISED = ("age_mae", "gender_accuracy")  # the metrics of a model chapter's `group_summary`


def styled(
    table: pd.DataFrame, caption: str, name: str, formats=None, prose: tuple[str, ...] = ()
) -> Styler:
    """`table` as the book shows it: titled by `caption`, its index names unshown (no empty
    header row; a name of the columns labels the row labels' column), a missing value as
    `NO_VALUE` (the caption says what it means), styled like the book's other tables
    (``class="dataframe"``).

    Args:
        table: the values; its index labels the rows.
        caption: the table's title (and any note on what its cells mean).
        name: a short id, unique on its page, so that the HTML is the same at every execution.
        formats: per column, a format string or callable (see `pandas.io.formats.style.Styler`).
        prose: columns of sentences, which wrap (every other cell reads on one line, so that a
            table of short values with one such column would otherwise scroll on any screen).
    """
    table = table.rename_axis(index=[None] * table.index.nlevels)
    if table.isna().to_numpy().any():
        caption += f" ({NO_VALUE}: not defined for this group)"
    styler = Styler(table, uuid=re.sub(r"[^A-Za-z0-9_-]", "_", name), cell_ids=False)
    styler.set_caption(caption).set_table_attributes('class="dataframe"')
    if prose:
        styler.set_properties(subset=list(prose), **{"white-space": "normal", "min-width": "12em"})
    return styler.format(formats, na_rep=NO_VALUE)


def group_name(grouping: str, group) -> str:
    """A group as the book names it: a race or gender stored as its label becomes its name."""
    names = GROUP_NAMES.get(grouping)
    if names is not None and str(group).isdigit() and int(group) < len(names):
        return names[int(group)]
    return str(group)


def _groups(run: RunResults, grouping: str) -> pd.DataFrame:
    groups = pd.DataFrame(run.metrics["by_group"])
    groups = groups[groups["grouping"] == grouping]
    return groups.assign(group=[group_name(grouping, g) for g in groups["group"]]).set_index(
        "group"
    )


def group_table(runs: dict[str, RunResults], grouping: str, metric: str) -> Styler:
    """One metric per run (rows) and group (columns: ``age_band``, ``race`` or ``gender``),
    titled with the metric, in its `DIGITS`.

    Each column names its group and how many test images it holds, e.g. ``0-12 (n=502)``. The
    table is a `pandas.io.formats.style.Styler`; ``.data`` holds its values.
    """
    rows, sizes = {}, {}
    for name, run in runs.items():
        groups = _groups(run, grouping)
        rows[name] = groups[metric]
        sizes = {**groups["n"].to_dict(), **sizes}
    table = pd.DataFrame(rows).T
    table.columns = [f"{group} (n={sizes[group]:,})" for group in table.columns]
    caption = f"{METRIC_LABELS[metric]} by {GROUPINGS[grouping]} (n: test images)"
    return styled(table, caption, f"{grouping}_{metric}", f"{{:.{DIGITS[metric]}f}}")


def group_tables(runs: dict[str, RunResults], compared=COMPARED) -> list[Styler]:
    """The comparison's group tables (`group_table` for each grouping and metric in
    `compared`), to show with ``display``."""
    return [group_table(runs, grouping, metric) for grouping, metric in compared]


def group_summary(run: RunResults, metrics=SUMMARISED) -> Styler:
    """One run's errors by age band, race and gender in one narrow table: a row per group (its
    test images and each of `metrics`, in their `DIGITS`), a column per metric."""
    parts = []
    for grouping, label in GROUPINGS.items():
        groups = _groups(run, grouping)
        part = groups[["n", *metrics]].rename(columns={"n": "test images", **METRIC_LABELS})
        parts.append(part.set_index(pd.MultiIndex.from_product([[label], part.index])))
    table = pd.concat(parts)
    formats = {"test images": "{:,}"} | {METRIC_LABELS[m]: f"{{:.{DIGITS[m]}f}}" for m in metrics}
    caption = (
        f"{run.name}: {' and '.join(METRIC_LABELS[m] for m in metrics)} by age band, race and "
        "gender, on the test images"
    )
    return styled(table, caption, f"groups_{run.name}", formats)


def cost_table(runs: dict[str, RunResults]) -> pd.DataFrame:
    """How each model was trained and what it cost: images, size, epochs, time, device.

    The training time adds up every epoch of every invocation of the run (a resumed run counts
    both parts), plus the one-time feature extraction of a feature model. Peers and baselines
    are left out: they are not trained here (`peer_table`).
    """
    rows = {}
    for name, run in runs.items():
        if not run.trained:
            continue
        record = run.provenance
        epochs = f"{record['epochs_run']}"
        if run.metrics.get("best_epoch") is not None:
            epochs += f" (best {run.metrics['best_epoch'] + 1})"
        rows[name] = {
            "training images": record["parameters"]["data"]["train"]["images"],
            "image size (px)": record["parameters"]["image_size"],
            "epochs": epochs,
            "training time (min)": round(training_seconds(record) / 60, 1),
            "backend, device": f"{record['backend']}, {record['devices'][0]}",
        }
    return pd.DataFrame(rows).T.rename_axis(index=None, columns="model")


def training_seconds(record: dict) -> float:
    """A run's training cost in seconds: its epochs plus any feature extraction.

    Runs recorded before epochs were timed give their last invocation's wall time instead.
    """
    if record.get("training_time_s") is None:
        return record["wall_time_s"]
    return record["training_time_s"] + (record.get("feature_extraction_s") or 0.0)


def peer_table(peers: dict[str, RunResults]) -> pd.DataFrame:
    """How each off-the-shelf peer ran: its face box, faces its detector found, and its speed."""
    rows = {}
    for name, run in peers.items():
        record, detection = run.provenance, run.metrics.get("detection")
        rows[name] = {
            "face box": FACE_BOXES[record["peer"]["mode"]],
            "faces found": f"{detection['rate']:.1%}" if detection else "(not detecting)",
            "test images": run.metrics["overall"]["n"],
            "images/s (1 CPU thread)": f"{record['images_per_s']:.1f}",
        }
    return pd.DataFrame(rows).T.rename_axis(index=None, columns="peer")


FACE_BOXES = {"detector": "its own detector", "whole_image": "the whole image"}


def protocol(runs: dict[str, RunResults]) -> str:
    """One sentence of how the numbers were made: training images, size, epochs, test images."""
    trained = {name: run.provenance for name, run in runs.items() if run.trained}
    setups = {
        (r["parameters"]["data"]["train"]["images"], r["parameters"]["image_size"])
        for r in trained.values()
    }
    if len(setups) == 1:
        ((images, size),) = setups
        epochs = ", ".join(f"{name} {r['epochs_run']}" for name, r in trained.items())
        parts = [f"models trained on {images:,} images at {size} px (epochs: {epochs})"]
    else:
        parts = [
            f"{name} trained on {r['parameters']['data']['train']['images']:,} images at "
            f"{r['parameters']['image_size']} px for {r['epochs_run']} epochs"
            for name, r in trained.items()
        ]
    parts += _untrained_parts(runs.values())
    tested = " and ".join(
        f"{n:,}" for n in sorted({r.metrics["overall"]["n"] for r in runs.values()})
    )
    return f"Protocol: {'; '.join(parts)}; all tested on the same {tested} test images."


def _untrained_parts(runs) -> list[str]:
    parts = []
    if any(run.peer for run in runs):
        parts.append("the off-the-shelf peer not trained here")
    if any(run.baseline for run in runs):
        parts.append("the constant baseline fitted on the training split's labels")
    return parts


def external_table(external: dict, in_domain: dict[str, RunResults]) -> pd.DataFrame:
    """One column per run on a set from elsewhere (`store.load_external`, by set and run): what
    became of the set's photos, and age MAE and gender accuracy with their 95 % intervals on the
    set and, beside them, the same run's on UTKFace's test split (`in_domain`, by run name)."""
    columns = {}
    for (name, run_name), run in external.items():
        counts = run.metrics["photos"]
        home = in_domain.get(run_name)
        columns[(name, run_name)] = {
            "photos evaluated": f"{counts['evaluated']:,} of {counts['labelled']:,}",
            "no face found": counts["no_face"] + counts.get("whole_image", 0),
            "unreadable": counts["unreadable"],
            "age MAE on the set": _metric_cell(run, "age_mae", 2),
            "age MAE on the test split": _metric_cell(home, "age_mae", 2) if home else None,
            "gender accuracy on the set": _metric_cell(run, "gender_accuracy", 3),
            "gender accuracy on the test split": _metric_cell(home, "gender_accuracy", 3)
            if home
            else None,
        }
    table = pd.DataFrame(columns)
    if len(table.columns):
        table.columns = table.columns.set_names(["set", "run"])
    return table


def _metric_cell(run: RunResults, metric: str, digits: int) -> str | None:
    ci = run.metrics.get("confidence_intervals", {}).get(metric)
    if ci and ci.get("low") is not None:
        return _with_interval(ci, digits)
    value = run.metrics["overall"].get(metric)
    return None if value is None else f"{value:.{digits}f}"


def _with_interval(ci: dict, digits: int) -> str:
    """``value ± half-width`` of a 95 % interval, joined by no-break spaces so that a table cell
    never wraps (bootstrap intervals are nearly symmetric; the bounds are in metrics.json)."""
    half = (ci["high"] - ci["low"]) / 2
    return f"{ci['value']:.{digits}f}\u00a0±\u00a0{half:.{digits}f}"


def weights_caption(runs: dict[str, RunResults]) -> str:
    """One sentence naming each run's starting weights, flagging non-transfer runs."""
    entries = [f"{n}: {weights_words(n, r.provenance)[1]}" for n, r in runs.items()]
    return "Starting weights: " + "; ".join(entries) + "."


def weights_tag(run: RunResults) -> str:
    """A table-cell version of `weights_caption`'s entry for one run."""
    return weights_words(run.name, run.provenance)[0]


def chapter_times_table(times: dict) -> pd.DataFrame:
    """Minutes per chapter of the last execution under a profile, with their sum, the commit
    each ran at (``+``: with uncommitted changes) and when it finished (UTC)."""
    commit = "commit (+: uncommitted changes)"
    rows = {
        chapter: {
            "minutes": round(entry["seconds"] / 60, 1),
            commit: (entry.get("git_commit") or "")[:10] + ("+" * bool(entry.get("git_dirty"))),
            "finished (UTC)": _utc(entry["finished_at"]),
        }
        for chapter, entry in times.items()
    }
    total = round(sum(entry["seconds"] for entry in times.values()) / 60, 1)
    rows["all chapters"] = {"minutes": total, commit: "", "finished (UTC)": ""}
    return pd.DataFrame(rows).T.rename_axis(index=None, columns="chapter")


def _utc(stamp: str) -> str:
    """An ISO time as ``2026-12-03 08:49`` in UTC (the text itself when it is not one)."""
    try:
        time = pd.Timestamp(stamp)
    except ValueError:
        return stamp
    time = time.tz_localize("UTC") if time.tzinfo is None else time.tz_convert("UTC")
    return time.strftime("%Y-%m-%d %H:%M")


def imagenet_files() -> MarkdownText:
    """The ImageNet weights files the transfer models start from, as a Markdown list: each
    base's file (a link to where it is fetched from) and its md5."""
    from agegender.models.weights import IMAGENET_FILES
    from agegender.results.summary import MarkdownText

    return MarkdownText(
        "\n".join(
            f"- **{spec.base}**: [`{spec.file}`]({spec.url}), md5 `{spec.md5}`"
            for spec in IMAGENET_FILES.values()
        )
    )
