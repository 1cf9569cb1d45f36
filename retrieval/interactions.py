"""Interactions as a sparse user x item matrix with its id maps: built in one place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass(frozen=True)
class UserItemMatrix:
    """A `(n_users, n_items)` float32 CSR matrix and the maps from ids to its rows/columns.

    Attributes:
        matrix: values per (user, item); duplicates are summed by scipy.
        user_rows: user id -> row.
        item_cols: item id -> column (the catalogue order given).
    """

    matrix: sp.csr_matrix
    user_rows: dict[str, int]
    item_cols: dict[str, int]


def user_item_matrix(
    interactions: pd.DataFrame,
    item_ids: Sequence[str],
    *,
    values: str | np.ndarray | None = "rating",
    users: Sequence[str] | None = None,
) -> UserItemMatrix:
    """The matrix of `interactions` (`user_id`, `item_id`, ... columns) over `item_ids`.

    Args:
        interactions: one row per event; rows whose item is not in `item_ids` are dropped.
        item_ids: the columns, in order.
        values: a column name, an array aligned with `interactions`, or None for 1.0 each.
        users: the rows, in order; default every user in order of first appearance.

    Returns:
        UserItemMatrix; users with no known item keep an empty row.
    """
    cols = {str(i): n for n, i in enumerate(item_ids)}
    order = pd.unique(interactions["user_id"]) if users is None else users
    rows = {str(u): n for n, u in enumerate(order)}
    if values is None:
        vals = np.ones(len(interactions), np.float32)
    elif isinstance(values, str):
        vals = interactions[values].to_numpy(np.float32)
    else:
        vals = np.asarray(values, np.float32)
    r = interactions["user_id"].astype(str).map(rows)
    c = interactions["item_id"].astype(str).map(cols)
    ok = (r.notna() & c.notna()).to_numpy()
    matrix = sp.csr_matrix(
        (vals[ok], (r[ok].to_numpy(np.int64), c[ok].to_numpy(np.int64))),
        shape=(len(rows), len(cols)),
    )
    return UserItemMatrix(matrix, rows, cols)
