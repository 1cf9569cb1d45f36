"""Encoder registry: pick encoders by name in config, like open_clip's model list."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from retrieval.encoders.base import Encoder, LabelledEncoder
from retrieval.errors import UnknownBackendError

ENCODERS: dict[str, Callable[..., Encoder]] = {}
_CACHE: dict[tuple[str, str], Encoder] = {}


def register_encoder(name: str) -> Callable[[Callable[..., Encoder]], Callable[..., Encoder]]:
    def deco(factory: Callable[..., Encoder]) -> Callable[..., Encoder]:
        ENCODERS[name] = factory
        return factory

    return deco


def _load_builtin() -> None:
    # Imported for their @register_encoder side effect; heavy libraries load inside factories.
    from retrieval.encoders import audio, image, text  # noqa: F401


def list_encoders() -> list[str]:
    _load_builtin()
    return sorted(ENCODERS)


def encoder_factory(name: str) -> Callable[..., Encoder]:
    """The factory registered as `name` (no model is loaded); unknown names are an error."""
    _load_builtin()
    if name not in ENCODERS:
        raise UnknownBackendError(
            f"unknown encoder '{name}'; available: {', '.join(sorted(ENCODERS))}"
        )
    return ENCODERS[name]


def create_encoder(name: str, **kwargs: Any) -> Encoder:
    """Build (or reuse) the encoder registered as `name`; kwargs go to its factory."""
    factory = encoder_factory(name)
    key = (name, repr(sorted(kwargs.items())))
    if key not in _CACHE:
        _CACHE[key] = factory(**kwargs)
    return _CACHE[key]


__all__ = [
    "Encoder",
    "LabelledEncoder",
    "create_encoder",
    "encoder_factory",
    "list_encoders",
    "register_encoder",
]
