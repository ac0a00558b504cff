"""The training history: one row per epoch, over every stage and every resumed invocation."""

from __future__ import annotations

import pandas as pd

# The key of an epoch's row naming the invocation (one start of the run) that trained it; kept in
# the saved state, not in the results' history (`agegender.training.history.history_table`).
INVOCATION = "invocation"
FIRST_COLUMNS = ("epoch", "stage", "learning_rate", "epoch_time_s", "loss", "val_loss")


def history_table(rows: list[dict]) -> pd.DataFrame:
    """The epochs' rows in order, the main columns first (less the invocation that trained each,
    which `invocations` counts)."""
    table = pd.DataFrame([{k: v for k, v in row.items() if k != INVOCATION} for row in rows])
    if table.empty:
        return pd.DataFrame(columns=["epoch", "stage"])
    columns = [c for c in FIRST_COLUMNS if c in table]
    columns += sorted(c for c in table if c not in FIRST_COLUMNS)
    return table[columns].sort_values("epoch", kind="stable").reset_index(drop=True)


def training_seconds(history: pd.DataFrame) -> float | None:
    """The epochs' summed time; None when some epoch was not timed (a run from before)."""
    times = history.get("epoch_time_s")
    if times is None or times.isna().any():
        return None
    return round(float(times.sum()), 3)


def invocations(rows: list[dict], current: str) -> int:
    """How many invocations (starts) the run took: those that trained its epochs and the
    `current` one (which may only have evaluated a finished run); epochs saved before
    invocations were named count as one more."""
    return len({row.get(INVOCATION) for row in rows} | {current})


def best_epoch(history: pd.DataFrame) -> int | None:
    """The epoch with the lowest validation loss (the one kept), or None."""
    if "val_loss" not in history or history["val_loss"].isna().all():
        return None
    return int(history.loc[history["val_loss"].idxmin(), "epoch"])


def best_val_loss(rows: list[dict]) -> float | None:
    return min((row["val_loss"] for row in rows if "val_loss" in row), default=None)
