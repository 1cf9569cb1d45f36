"""Exception hierarchy: one base class so the CLI can catch everything we raise in one place."""

from __future__ import annotations


class FusionrecError(Exception):
    """Base class for every error fusionrec raises on purpose."""


class UnknownBackendError(FusionrecError, ValueError):
    """A name in config (encoder, reranker, LLM backend) is not registered."""


class MissingDependencyError(FusionrecError, ImportError):
    """An optional package is not installed; the message names the install command."""


class CatalogueError(FusionrecError, ValueError):
    """A catalogue or interaction file cannot be used as a whole."""


class ModelLoadError(FusionrecError, RuntimeError):
    """Model weights are missing, corrupt or fail their integrity check."""


class StoreError(FusionrecError, RuntimeError):
    """The vector store is unusable, or was built with different encoders."""


def require(module: str, extra: str) -> None:
    """Raise MissingDependencyError naming the pip extra when `module` is not importable."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(
            f"'{module}' is not installed; install it with: pip install 'fusionrec[{extra}]'"
        )
