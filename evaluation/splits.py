"""How evaluation data is split: tune on one part, report on another, never the same rows."""

from __future__ import annotations

import pandas as pd


def split_leave_last_out(inter: pd.DataFrame, hold: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows before each user's last `hold` interactions, and the row `hold` from the end.

    `hold=1` is the test target (each user's last item), `hold=2` the validation target
    (second-to-last), with everything before it as training. Rows must be in time order
    within each user.
    """
    pos = inter.groupby("user_id", sort=False).cumcount()
    size = inter.groupby("user_id", sort=False)["item_id"].transform("size")
    return inter[pos < size - hold], inter[pos == size - hold]
