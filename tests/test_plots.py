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
            "val_gender_accuracy": 1 - values / 3,
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
    assert list(shares.columns) == ["train", "val", "test"]
    assert np.allclose(shares.sum(axis=1), 100, atol=0.2)


def test_model_figures(dataset):
    folder, _, split = dataset
    curves = plots.learning_curves({"a": history(), "b": history(("train", "train"))})
    assert len(curves.axes) == 4  # loss, MAE, accuracy and the legend
    assert len(curves.axes[0].lines) == 2 * 2 + 1  # train and validation per model, one stage line
    legend = [t.get_text() for t in curves.axes[3].get_legend().get_texts()]
    assert legend[:2] == ["a", "b"] and "validation" in legend
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


def test_the_comparison_gives_each_model_a_row_and_each_metric_one_axis():
    histories = {"long": history(("train",) * 6), "short": history(("train", "fine_tune"))}
    figure = plots.comparison_curves(histories, {"long": 4, "short": None})
    axes = np.array(figure.axes).reshape(2, 2)
    assert [ax.get_title() for ax in axes[:, 0]] == [
        "long: age MAE (years)",
        "short: age MAE (years)",
    ]
    assert axes[0, 0].get_ylim() == axes[1, 0].get_ylim()  # one age axis for every model
    assert axes[0, 0].get_ylim()[1] >= histories["long"]["val_age_mae"].max()  # nothing clipped
    assert axes[1, 0].get_xlim()[1] < 3 < axes[0, 0].get_xlim()[1]  # each row on its own epochs
    ringed = [line for line in axes[0, 1].lines if line.get_marker() == "o"]
    assert len(ringed) == 1 and ringed[0].get_xdata()[0] == 5  # the kept epoch, 1-based
    assert not [line for line in axes[1, 1].lines if line.get_marker() == "o"]
    plt.close(figure)
