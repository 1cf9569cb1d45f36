"""Matrix factorisation scorers (`implicit` ALS / BPR) and factors files from other engines.

A factors file lets a distributed engine (Spark MLlib ALS, `implicit` on a GPU box) train
the collaborative model offline while fusionrec serves it with the same `ItemScorer`
interface. Format (`.npz`, read with `allow_pickle=False`):

    format        "fusionrec-factors/1"
    engine        free text, e.g. "spark-mllib-als 4.3.0"
    item_ids      (n_items,) str: the catalogue ids, one per row of item_factors
    item_factors  (n_items, f) float32
    user_ids      (n_users,) str        optional (kept for known-user look-ups and checks)
    user_factors  (n_users, f) float32  optional
    regularization, alpha  float: the training settings, reused by the fold-in
    confidence    "spark" (c = 1 + alpha r, regulariser x history length)
                  or "implicit" (c = alpha r)

`load_factors(path, item_ids=catalogue)` refuses a file whose item set differs from the
catalogue or whose arrays disagree in shape, with a message saying what differs.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from retrieval.cf import EASE, GIB, MODELS, ItemScorer, choose_cf_model
from retrieval.errors import FusionrecError, MissingDependencyError

logger = logging.getLogger(__name__)

FORMAT = "fusionrec-factors/1"


class FactorsError(FusionrecError, ValueError):
    """A factors file cannot be served: wrong shape, another item set, pickles, missing keys."""


class MatrixFactorization(ItemScorer):
    """Shared by factor models: item factors, fold-in of any history, chunked scores.

    A history row is folded in by the implicit-feedback least-squares step of Hu, Koren and
    Volinsky (2008) with the item factors fixed, so users unseen at fit time (every
    fusionrec request) are scored exactly the way ALS scores its own users:
    `u = (YtY + sum_i (c_i - 1) y_i y_i^T + reg I)^-1 sum_i c_i y_i`, `c_i = offset + alpha w_i`
    for the history weights `w_i > 0`. `implicit` uses offset 0, Spark MLlib offset 1 and a
    regulariser scaled by the history length (`scale_reg`). Scores are `u . y_j`.
    Memory: `(items + users) x factors` float32 (1M items x 64 = 256 MB).
    """

    kind = "mf"
    _arrays = ("item_factors", "user_factors")
    _params = ("factors", "regularization", "alpha")
    confidence_offset: ClassVar[float] = 0.0
    scale_reg: ClassVar[bool] = False
    bias_column: ClassVar[bool] = False  # last item column is a bias (BPR): user side fixed 1

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 10.0,
        *,
        random_state: int | None = None,
    ) -> None:
        super().__init__(random_state=random_state)
        self.factors = int(factors)
        self.regularization = float(regularization)
        self.alpha = float(alpha)
        self.item_factors = np.zeros((0, self.factors), np.float32)
        self.user_factors = np.zeros((0, self.factors), np.float32)
        self._yty: np.ndarray | None = None

    def estimate_bytes(self, user_items: sp.csr_matrix) -> int:
        """Factors (float32) + the library's transposed copy of the input (~12 B per entry)."""
        n_users, n_items = user_items.shape
        return 4 * (n_users + n_items) * (self.factors + 1) + 24 * user_items.nnz

    def _fit_library(self, ui: sp.csr_matrix) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit_implicit(self, model: Any, ui: sp.csr_matrix, *, use_gpu: bool) -> None:
        """Fit an `implicit` model and keep its factors (on the CPU)."""
        model.fit(ui, show_progress=False)
        if use_gpu:
            model = model.to_cpu()
        self.item_factors, self.user_factors = model.item_factors, model.user_factors

    def fit(self, user_items: sp.csr_matrix) -> MatrixFactorization:
        """Factorise `user_items` (values are confidences; > 0 = interacted) with `implicit`."""
        ui = self._check(user_items)
        self._guard(ui, f"{ui.shape[0]:,} users x {ui.shape[1]:,} items x {self.factors} factors")
        self._fit_library(ui)
        self.item_factors = np.ascontiguousarray(self.item_factors, dtype=np.float32)
        self.user_factors = np.ascontiguousarray(self.user_factors, dtype=np.float32)
        self.n_items = ui.shape[1]
        self._yty = None
        self._gram()  # here, not in the first request (1 s at 1M items; docs/scale.md)
        return self

    def _gram(self) -> np.ndarray:
        """YᵀY of the item factors in float64, computed once per set of factors."""
        if self._yty is None:
            y64 = self._item_side().astype(np.float64)
            self._yty = y64.T @ y64
        return self._yty

    def _item_side(self) -> np.ndarray:
        y = self.item_factors
        return y[:, :-1] if self.bias_column else y

    def user_vectors(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Fold each history row into a user vector: `(rows, factors)` float32 (see class doc)."""
        ui = self._check(user_items)
        y = self._item_side()  # float32, never copied whole: per user only its history rows
        yty = self._gram()
        f = y.shape[1]
        out = np.zeros((ui.shape[0], f), np.float64)
        for r in range(ui.shape[0]):
            lo, hi = ui.indptr[r], ui.indptr[r + 1]
            w = ui.data[lo:hi].astype(np.float64)
            pos = w > 0
            if not pos.any():
                continue
            yi = y[ui.indices[lo:hi][pos]].astype(np.float64)
            c = self.confidence_offset + self.alpha * w[pos]
            reg = self.regularization * (int(pos.sum()) if self.scale_reg else 1)
            a = yty + (yi.T * (c - 1.0)) @ yi + reg * np.eye(f)
            out[r] = np.linalg.solve(a, yi.T @ c)
        return out.astype(np.float32)

    def score(self, user_items: sp.csr_matrix) -> np.ndarray:
        """`(rows, n_items)` float32: folded-in user vectors against every item's factors."""
        u = self.user_vectors(user_items)
        if self.bias_column:
            u = np.hstack([u, np.ones((len(u), 1), np.float32)])
        return u @ self.item_factors.T


class ALS(MatrixFactorization):
    """Implicit-feedback ALS from `implicit` (conjugate gradient; CPU, or CUDA when built for it).

    Args:
        factors: latent dimensions.
        regularization: L2 on user and item factors.
        alpha: confidence of an interaction = alpha x its value.
        iterations: ALS sweeps.
        use_gpu: fit with implicit's CUDA kernels (needs a CUDA build of implicit).
    """

    kind = "als"
    _params = ("factors", "regularization", "alpha", "iterations")

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 10.0,
        iterations: int = 15,
        *,
        use_gpu: bool = False,
        random_state: int | None = 0,
    ) -> None:
        super().__init__(factors, regularization, alpha, random_state=random_state)
        self.iterations = int(iterations)
        self.use_gpu = bool(use_gpu)

    def _fit_library(self, ui: sp.csr_matrix) -> None:
        als = _implicit_module("als", self.use_gpu)
        model = als.AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            random_state=self.random_state,
        )
        self._fit_implicit(model, ui, use_gpu=self.use_gpu)


class BPR(MatrixFactorization):
    """Bayesian personalised ranking from `implicit` (SGD on sampled pairs; not bit-reproducible
    with several threads). New histories are folded in with the least-squares step.

    Args:
        factors: latent dimensions (implicit adds an item-bias column).
        learning_rate: SGD step.
        regularization: L2 on the factors; also the fold-in ridge.
        iterations: epochs over the interactions.
        use_gpu: fit with implicit's CUDA kernels (needs a CUDA build of implicit).
    """

    kind = "bpr"
    _params = ("factors", "regularization", "alpha", "learning_rate", "iterations")
    bias_column = True

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        learning_rate: float = 0.05,
        iterations: int = 50,
        *,
        use_gpu: bool = False,
        random_state: int | None = 0,
    ) -> None:
        super().__init__(factors, regularization, alpha, random_state=random_state)
        self.learning_rate = float(learning_rate)
        self.iterations = int(iterations)
        self.use_gpu = bool(use_gpu)

    def _fit_library(self, ui: sp.csr_matrix) -> None:
        bpr = _implicit_module("bpr", self.use_gpu)
        model = bpr.BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            random_state=self.random_state,
        )
        self._fit_implicit(model, ui, use_gpu=self.use_gpu)


class FactorScorer(MatrixFactorization):
    """Factors trained elsewhere (Spark MLlib ALS, implicit on a GPU); see `retrieval.factors`.

    `confidence` names the engine's convention for the fold-in: "implicit" (c = alpha w) or
    "spark" (c = 1 + alpha w, regulariser x history length).
    """

    kind = "factors"
    _params = ("factors", "regularization", "alpha", "confidence")

    def __init__(
        self,
        factors: int = 0,
        regularization: float = 0.1,
        alpha: float = 1.0,
        confidence: str = "spark",
        *,
        random_state: int | None = None,
    ) -> None:
        super().__init__(factors, regularization, alpha, random_state=random_state)
        if confidence not in ("implicit", "spark"):
            raise ValueError(f"confidence must be 'implicit' or 'spark', got {confidence!r}")
        self.confidence = confidence

    @property
    def confidence_offset(self) -> float:  # type: ignore[override]
        return 1.0 if self.confidence == "spark" else 0.0

    @property
    def scale_reg(self) -> bool:  # type: ignore[override]
        return self.confidence == "spark"

    def fit(self, user_items: sp.csr_matrix) -> FactorScorer:
        raise TypeError(
            "FactorScorer holds factors trained elsewhere; load them with "
            "retrieval.factors.load_factors"
        )


def _implicit_module(name: str, use_gpu: bool) -> Any:
    """`implicit.cpu.<name>` or `implicit.gpu.<name>`, with a clear error when unavailable."""
    try:
        import implicit.gpu
    except ImportError as e:
        raise MissingDependencyError(
            "matrix factorisation needs 'implicit'; install it with: pip install implicit==0.7.3"
        ) from e
    if use_gpu:
        if not implicit.gpu.HAS_CUDA:
            raise FusionrecError(
                "implicit was built without CUDA; set hybrid.mf_device = 'cpu' or install a "
                "CUDA build of implicit"
            )
        return importlib.import_module(f"implicit.gpu.{name}")
    return importlib.import_module(f"implicit.cpu.{name}")


MODELS.update({m.kind: m for m in (ALS, BPR, FactorScorer)})


def save_factors(
    path: str | Path,
    item_ids: Sequence[str],
    item_factors: np.ndarray,
    *,
    user_ids: Sequence[str] | None = None,
    user_factors: np.ndarray | None = None,
    engine: str = "unknown",
    regularization: float = 0.1,
    alpha: float = 1.0,
    confidence: str = "spark",
) -> None:
    """Write a factors file (the format in the module docstring); arrays are checked first."""
    payload: dict[str, Any] = {
        "format": np.array(FORMAT),
        "engine": np.array(str(engine)),
        "item_ids": np.array([str(i) for i in item_ids]),
        "item_factors": np.asarray(item_factors, dtype=np.float32),
        "regularization": np.array(float(regularization)),
        "alpha": np.array(float(alpha)),
        "confidence": np.array(str(confidence)),
    }
    if user_factors is not None:
        payload["user_factors"] = np.asarray(user_factors, dtype=np.float32)
        payload["user_ids"] = np.array(
            [str(u) for u in (user_ids if user_ids is not None else range(len(user_factors)))]
        )
    _validate(payload, str(path))
    with open(path, "wb") as fh:  # np.savez on a handle: no ".npz" appended to the name
        np.savez(fh, **payload)


def load_factors(path: str | Path, *, item_ids: Sequence[str] | None = None) -> FactorScorer:
    """Read a factors file into a `FactorScorer`, rows in the order of `item_ids`.

    Args:
        path: the `.npz` file.
        item_ids: the catalogue being served; the file must hold exactly these ids (any order).

    Raises:
        FactorsError: unreadable file, pickled objects, missing keys, inconsistent shapes,
            non-finite factors, or an item set that differs from `item_ids`.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FactorsError(f"no factors file at {p}")
    with p.open("rb") as fh:
        if fh.read(4) != b"PK\x03\x04":  # an .npz is a zip archive
            raise FactorsError(f"{p} is not a readable .npz factors file (not a zip archive)")
    try:
        with np.load(p, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except ValueError as e:  # object arrays need pickles: refused
        raise FactorsError(f"{p}: refused, it holds pickled objects or bad arrays ({e})") from e
    except Exception as e:
        raise FactorsError(f"{p} is not a readable .npz factors file: {e}") from e
    _validate(data, str(p))
    ids = [str(i) for i in data["item_ids"]]
    factors = data["item_factors"].astype(np.float32)
    if item_ids is not None:
        factors = factors[_catalogue_order(ids, [str(i) for i in item_ids], str(p))]
        ids = [str(i) for i in item_ids]
    model = FactorScorer(
        factors.shape[1],
        float(data["regularization"]),
        float(data["alpha"]),
        str(data["confidence"]),
    )
    model.item_factors = np.ascontiguousarray(factors)
    model.n_items = len(ids)
    if "user_factors" in data:
        model.user_factors = data["user_factors"].astype(np.float32)
        model.user_ids = [str(u) for u in data["user_ids"]]
    model.engine = str(data["engine"])
    logger.info("factors from %s (%s): %d items x %d factors", p, model.engine, *factors.shape)
    return model


REQUIRED = ("format", "item_ids", "item_factors", "regularization", "alpha", "confidence")


def _validate(data: dict[str, Any], where: str) -> None:
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise FactorsError(f"{where}: missing {missing}; a factors file needs {list(REQUIRED)}")
    if str(data["format"]) != FORMAT:
        raise FactorsError(f"{where}: format {str(data['format'])!r}, expected {FORMAT!r}")
    items, ids = data["item_factors"], data["item_ids"]
    if items.ndim != 2 or items.shape[1] == 0 or not np.issubdtype(items.dtype, np.floating):
        raise FactorsError(
            f"{where}: item_factors must be a 2-D float array (items x factors), "
            f"got {items.dtype} {items.shape}"
        )
    if ids.ndim != 1 or len(ids) != items.shape[0]:
        raise FactorsError(
            f"{where}: {ids.shape} item_ids for {items.shape[0]} rows of item_factors"
        )
    if len(set(ids.tolist())) != len(ids):
        raise FactorsError(f"{where}: item_ids has duplicates")
    if not np.isfinite(items).all():
        raise FactorsError(f"{where}: item_factors holds NaN or inf")
    if str(data["confidence"]) not in ("spark", "implicit"):
        raise FactorsError(
            f"{where}: confidence {str(data['confidence'])!r}; valid: 'spark', 'implicit'"
        )
    if "user_factors" in data:
        users = data["user_factors"]
        if users.ndim != 2 or users.shape[1] != items.shape[1]:
            raise FactorsError(
                f"{where}: user_factors {users.shape} does not match item_factors "
                f"{items.shape} (same number of factors needed)"
            )
        if "user_ids" not in data or len(data["user_ids"]) != users.shape[0]:
            raise FactorsError(f"{where}: user_ids must name each row of user_factors")


def _catalogue_order(file_ids: list[str], catalogue: list[str], where: str) -> np.ndarray:
    """Row of the file for each catalogue item; refuses any difference in the item set."""
    pos = {i: k for k, i in enumerate(file_ids)}
    missing = [i for i in catalogue if i not in pos]
    extra = set(file_ids) - set(catalogue)
    if missing or extra or len(catalogue) != len(file_ids):
        raise FactorsError(
            f"{where} was trained on another item set: {len(file_ids):,} items in the file, "
            f"{len(catalogue):,} in the catalogue; {len(missing):,} catalogue items missing "
            f"(e.g. {missing[:3]}), {len(extra):,} not in the catalogue "
            f"(e.g. {sorted(extra)[:3]}). Re-export the factors for this catalogue"
        )
    return np.array([pos[i] for i in catalogue], dtype=np.int64)


def fit_main_cf(
    binary: sp.csr_matrix, config: Any, item_ids: Sequence[str]
) -> tuple[str, ItemScorer | None]:
    """Fit the hybrid's main collaborative source as `HybridConfig.cf_model` says.

    Returns `(source name, fitted model)`, or `(name, None)` when there is none to fit. The
    choice and its reason are logged; a model too big for memory raises `ModelTooLargeError`.
    """
    limit = int(config.cf_memory_gb * GIB) if config.cf_memory_gb else None
    kind, reason = choose_cf_model(
        binary.shape[1],
        cf_model=config.cf_model,
        ease_max_items=config.ease_max_items,
        memory_limit_bytes=limit,
    )
    logger.info("collaborative model: %s (%s)", kind, reason)
    if config.mf_device not in ("cpu", "cuda"):
        raise ValueError(f"mf_device must be 'cpu' or 'cuda', got {config.mf_device!r}")
    if kind == "none":
        return kind, None
    if kind == "factors":
        if not config.cf_factors_path:
            raise FactorsError("cf_model = 'factors' needs hybrid.cf_factors_path (an .npz file)")
        return kind, load_factors(config.cf_factors_path, item_ids=item_ids)
    if kind in ("als", "bpr") and binary.nnz == 0:
        logger.info("%s skipped: no interactions to factorise", kind)
        return kind, None
    gpu = config.mf_device == "cuda"
    model: ItemScorer
    if kind == "ease":
        model = EASE(config.ease_l2)
    elif kind == "als":
        f, reg, a, it = (
            config.mf_factors,
            config.mf_regularization,
            config.mf_alpha,
            config.mf_iterations,
        )
        model = ALS(f, reg, a, it, use_gpu=gpu)
    else:
        model = BPR(
            config.mf_factors,
            config.mf_regularization,
            iterations=4 * config.mf_iterations,
            use_gpu=gpu,
        )
    model.memory_limit_bytes = limit
    return kind, model.fit(binary)


def export_spark_als(
    model: Any,
    path: str | Path,
    *,
    item_ids: Sequence[str],
    user_ids: Sequence[str] | None = None,
    regularization: float,
    alpha: float,
) -> None:
    """Write a Spark MLlib `ALSModel` (implicitPrefs=True) as a factors file.

    Spark indexes items and users by integers; `item_ids[k]` is the catalogue id of Spark
    item k (and `user_ids[k]` of user k). `regularization` and `alpha` are the estimator's
    `regParam` and `alpha` (the model does not keep them); the fold-in reuses them. Nothing
    here imports pyspark: the model's `itemFactors` / `userFactors` DataFrames are collected.
    """
    rank = int(model.rank)

    def collect(frame: Any, names: Sequence[str] | None, what: str) -> tuple[list[str], np.ndarray]:
        rows = sorted((int(r["id"]), r["features"]) for r in frame.collect())
        ids = [r[0] for r in rows]
        mat = np.array([f for _, f in rows], dtype=np.float32).reshape(len(rows), rank)
        if names is None:
            return [str(i) for i in ids], mat
        if ids and (min(ids) < 0 or max(ids) >= len(names)):
            raise FactorsError(f"Spark {what} ids run to {max(ids)}; {len(names)} {what}_ids given")
        # every named id gets a row: ones Spark never saw (no interactions) score 0
        full = np.zeros((len(names), rank), np.float32)
        full[ids] = mat
        if len(ids) < len(names):
            logger.info(
                "%d of %d %ss had no interactions: zero factors",
                len(names) - len(ids),
                len(names),
                what,
            )
        return [str(n) for n in names], full

    items, item_factors = collect(model.itemFactors, item_ids, "item")
    users, user_factors = collect(model.userFactors, user_ids, "user")
    save_factors(
        path,
        items,
        item_factors,
        user_ids=users,
        user_factors=user_factors,
        engine="spark-mllib-als",
        regularization=regularization,
        alpha=alpha,
        confidence="spark",
    )
