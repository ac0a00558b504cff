import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from agegender import plots
from agegender.data.manifest import apply_duplicate_policy, scan
from agegender.data.split import make_split


@pytest.fixture
def dataset(utkface_folder):
    folder, _ = utkface_folder
    manifest = apply_duplicate_policy(scan(folder))
    return folder, manifest, make_split(manifest)


def history(stages=("train", "train", "fine_tune")):
    n = len(stages)
    values = np.linspace(2, 1, n)
    return pd.DataFrame(
        {
            "epoch": range(n),
            "stage": stages,
            "loss": values,
            "val_loss": values,
            "age_mae": values * 5,
            "val_age_mae": values * 6,
            "gender_accuracy": 1 - values / 4,
            "val_gender_accuracy": 1 - values / 5,
        }
    )


def predictions(split):
    rows = split.head(12)
    return pd.DataFrame(
        {
            "file": rows["file"],
            "age_true": rows["age"],
            "age_pred": rows["age"] + np.arange(12),
            "gender_true": rows["gender"],
            "gender_pred": 1 - rows["gender"],
            "gender_prob": 0.4,
        }
    )


def test_data_figures(dataset):
    folder, manifest, split = dataset
    pairs = plots.conflicting_pairs(manifest, 3)
    assert len(pairs) == 1 and pairs.loc[0, "labels_a"] != pairs.loc[0, "labels_b"]
    for figure in (
        plots.label_distributions(split),
        plots.face_grid(folder, split, per_band=3),
        plots.image_pairs(folder, pairs),
    ):
        assert isinstance(figure, Figure) and figure.axes
        plt.close(figure)
    shares = plots.stratification(split)
    assert list(shares.columns) == ["images", "train", "val", "test"]
    percent = shares[["train", "val", "test"]].map(lambda share: float(share.removesuffix(" %")))
    assert np.allclose(percent.sum(axis=1), 100, atol=0.2)
    assert shares.index[0] == "0-12, female" and "gender name" not in shares.to_html()


def test_label_legends_name_the_genders_not_a_column(dataset):
    _, _, split = dataset
    figure = plots.label_distributions(split)
    legends = [ax.get_legend() for ax in figure.axes if ax.get_legend() is not None]
    assert legends
    for legend in legends:
        assert legend.get_title().get_text() == ""
        assert {t.get_text() for t in legend.get_texts()} <= {"male", "female"}
    plt.close(figure)


def test_model_figures(dataset):
    folder, _, split = dataset
    curves = plots.learning_curves(history(), best_epoch=1)
    assert [ax.get_ylabel() for ax in curves.axes] == ["age MAE (years)", "gender accuracy"]
    # training, validation, the fine-tuning line and the ringed kept epoch
    assert len(curves.axes[0].lines) == 4
    legend = [t.get_text() for t in curves.legends[0].get_texts()]
    assert legend == ["training", "validation", "fine-tuning starts", "kept epoch"]
    table = predictions(split)
    worst = plots.worst_errors(folder, table, n=4)
    first_title = worst.axes[0].get_title().split("\n")[0]
    assert first_title.endswith(f"{table['age_pred'].iloc[-1]:.0f} years")  # largest error first
    matrix = plots.confusion(table)  # every prediction is the other gender
    males, females = (table["gender_true"] == 0).sum(), (table["gender_true"] == 1).sum()
    assert [t.get_text() for t in matrix.axes[0].texts] == [
        "0\n0.0 %",
        f"{males}\n100.0 %",
        f"{females}\n100.0 %",
        "0\n0.0 %",
    ]
    for figure in (curves, worst, matrix, plots.predicted_vs_true(table)):
        assert isinstance(figure, Figure)
        plt.close(figure)


def test_every_chapter_draws_its_curves_on_the_same_axes():
    short, long = history(("train",) * 4), history(("train",) * 30)
    long["val_age_mae"] = np.linspace(14, 7, 30)
    figures = [plots.learning_curves(short, 2), plots.learning_curves(long)]
    limits = [[ax.get_ylim() for ax in figure.axes] for figure in figures]
    assert limits[0] == limits[1] == [(0, 20), (0.5, 1.0)]
    for figure in figures:
        plt.close(figure)


def test_a_first_epoch_off_the_fixed_axis_widens_it_rather_than_being_clipped():
    off = history(("train", "train", "fine_tune"))
    off.loc[0, "age_mae"], off.loc[0, "val_gender_accuracy"] = 30.1, 0.41
    figure = plots.learning_curves(off)
    (mae_low, mae_high), (accuracy_low, accuracy_high) = [ax.get_ylim() for ax in figure.axes]
    assert mae_low == 0 and mae_high > 30.1 and mae_high % 5 == 0
    assert accuracy_low < 0.41 and accuracy_high == 1.0
    plt.close(figure)
    figure = plots.comparison_curves({"typical": history(), "off": off})
    assert figure.axes[0].get_ylim() == figure.axes[2].get_ylim() == (mae_low, mae_high)
    plt.close(figure)


def test_negative_age_predictions_are_shown_and_counted(dataset):
    _, _, split = dataset
    table = predictions(split)
    table["age_pred"] = table["age_pred"].astype(float)
    table.loc[table.index[:3], "age_pred"] = [-7.5, -1.0, -0.2]
    figure = plots.predicted_vs_true(table)
    ax = figure.axes[0]
    assert ax.get_ylim()[0] < -7.5 and ax.get_ylim()[1] > table["age_pred"].max()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "3 predictions below 0 years" in legend
    plt.close(figure)
    table["age_pred"] = table["age_pred"].clip(lower=1)
    figure = plots.predicted_vs_true(table)
    assert figure.axes[0].get_ylim()[0] == 0
    assert not any("below 0" in t.get_text() for t in figure.axes[0].get_legend().get_texts())
    plt.close(figure)


def test_worst_errors_name_the_true_and_the_predicted_gender(dataset):
    folder, _, split = dataset
    table = predictions(split)  # every prediction is the other gender
    figure = plots.worst_errors(folder, table, n=4)
    worst = table.loc[(table["age_pred"] - table["age_true"]).abs().idxmax()]
    true, predicted = (plots.GENDERS[int(worst[k])] for k in ("gender_true", "gender_pred"))
    assert figure.axes[0].get_title().split("\n")[1] == f"{true} → {predicted}"
    assert "true → predicted" in figure.get_suptitle()
    plt.close(figure)


def test_the_comparison_gives_each_model_a_row_and_each_metric_one_axis():
    histories = {"long": history(("train",) * 6), "short": history(("train", "fine_tune"))}
    figure = plots.comparison_curves(histories, {"long": 4, "short": None})
    axes = np.array(figure.axes).reshape(2, 2)
    assert [ax.get_title() for ax in axes[:, 0]] == ["long", "short"]
    assert [ax.get_ylabel() for ax in axes[0]] == ["age MAE (years)", "gender accuracy"]
    assert axes[0, 0].get_ylim() == axes[1, 0].get_ylim() == (0, 20)  # one fixed age axis
    assert axes[1, 0].get_xlim()[1] < 3 < axes[0, 0].get_xlim()[1]  # each row on its own epochs
    ringed = [line for line in axes[0, 1].lines if line.get_marker() == "o"]
    assert len(ringed) == 1 and ringed[0].get_xdata()[0] == 5  # the kept epoch, 1-based
    assert not [line for line in axes[1, 1].lines if line.get_marker() == "o"]
    plt.close(figure)


def test_a_study_without_results_still_gives_a_figure_that_says_so():
    figure = plots.data_size_curve("No data-size results yet: run agegender study cpu.")
    (ax,) = figure.axes
    assert "agegender study cpu" in ax.texts[0].get_text()
    plt.close(figure)
