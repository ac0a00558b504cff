"""A model chapter says what its predictions do, from the predictions alone."""

import numpy as np
import pandas as pd

from agegender.results import summary
from agegender.results.store import RunResults

TRUE_AGES = np.linspace(1, 90, 200)
GENDERS = np.arange(200) % 2  # half female


def run_predicting(ages, female) -> RunResults:
    predictions = pd.DataFrame(
        {
            "file": [f"{i}.jpg" for i in range(200)],
            "age_true": TRUE_AGES,
            "age_pred": ages,
            "gender_true": GENDERS,
            "gender_pred": female,
            "gender_prob": female.astype(float),
        }
    )
    mae = float(np.abs(predictions["age_pred"] - TRUE_AGES).mean())
    return RunResults("model", None, {"overall": {"age_mae": mae}}, predictions, {})


def test_a_collapsed_model_is_called_collapsed():
    same_age = np.full(200, 30.0) + np.linspace(-1, 1, 200)
    mostly_female = (np.arange(200) % 10 > 1).astype(int)  # 80 %
    said = summary.behaviour(run_predicting(same_age, mostly_female), {"age": 30.0})
    assert "from 29.0 to 31.0 years" in said
    assert "it gives nearly every face the same age" in said
    assert "is no better than" in said and "median age, 30 years" in said
    assert "calls 80 % of the test faces female, where 50 % are: it leans heavily" in said


def test_a_model_that_learnt_is_described_plainly():
    said = summary.behaviour(run_predicting(TRUE_AGES + 3, GENDERS), {"age": 30.0})
    assert "same age" not in said and "leans" not in said
    assert "3.00 years is 22.05 years better than the 25.05" in said
    assert "calls 50 % of the test faces female, where 50 % are." in said
    assert "constant" not in summary.behaviour(run_predicting(TRUE_AGES, GENDERS))
