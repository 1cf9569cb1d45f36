"""Prompt templates as files: scan `prompts/`, check placeholders at load, render safely.

Every template is a text file in the repository's `prompts/` folder (shipped as package
data), filled with `str.format` fields. A header of `#` comment lines comes first and lists
the fields on one line::

    # What this prompt does.
    # variables: history, item
    Items this person liked: {history}
    ...

`load_prompt(name)` parses the body, refuses malformed fields (positional `{}`, attribute or
index access, conversions) and, when the header declares variables, refuses any mismatch
between the declared names and the fields actually used. This follows open_clip's scan of
`model_configs/`: the folder is the registry, no prompt text lives in Python.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path

from retrieval.errors import FusionrecError

logger = logging.getLogger(__name__)

__all__ = ["Prompt", "PromptError", "list_prompts", "load_prompt", "prompts_dir"]

_VARIABLES_RE = re.compile(r"^#\s*variables\s*:\s*(.*)$", re.IGNORECASE)


class PromptError(FusionrecError, ValueError):
    """A prompt template is missing, malformed, or rendered with the wrong fields."""


@dataclass(frozen=True)
class Prompt:
    """A checked template.

    Attributes:
        name: file stem, e.g. "rerank_pointwise".
        template: the body (header comments removed), a `str.format` template.
        variables: the field names the body uses, in order of first use.
        path: the file it came from.
    """

    name: str
    template: str
    variables: tuple[str, ...]
    path: Path

    def render(self, **values: object) -> str:
        """Fill every field; missing or unexpected names raise PromptError listing the valid ones.

        Values are inserted verbatim: escaping untrusted text is the caller's job
        (see `agent.rerank.llm.quote_item`).
        """
        given, wanted = set(values), set(self.variables)
        if given != wanted:
            raise PromptError(
                f"prompt '{self.name}' takes exactly {sorted(wanted) or 'no fields'}; "
                f"missing {sorted(wanted - given)}, unexpected {sorted(given - wanted)}"
            )
        return self.template.format(**values)


def prompts_dir() -> Path:
    """The folder holding the templates: $FUSIONREC_PROMPTS, else `prompts/` beside `agent/`."""
    env = os.environ.get("FUSIONREC_PROMPTS")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent / "prompts"


def list_prompts(folder: str | Path | None = None) -> list[str]:
    """Names (file stems) of every `*.txt` template in the prompts folder, sorted."""
    root = Path(folder) if folder is not None else prompts_dir()
    return sorted(p.stem for p in root.glob("*.txt"))


def _fields(body: str, name: str) -> tuple[str, ...]:
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(body))
    except ValueError as e:  # unbalanced braces
        raise PromptError(f"prompt '{name}': malformed template: {e}") from e
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field.isidentifier():
            raise PromptError(
                f"prompt '{name}': field {{{field}}} must be a plain name "
                "(no positional, attribute or index fields)"
            )
        if spec or conversion:
            raise PromptError(
                f"prompt '{name}': field {{{field}}} must not use a format spec or !conversion"
            )
        if field not in names:
            names.append(field)
    return tuple(names)


def parse_prompt(text: str, *, name: str, path: Path | None = None) -> Prompt:
    """Split the header from the body and check the body's fields against the header.

    Raises:
        PromptError: malformed fields, or declared variables that differ from the used ones.
    """
    lines = text.splitlines(keepends=True)
    declared: tuple[str, ...] | None = None
    start = 0
    for start, line in enumerate(lines):  # noqa: B007 - start is used after the loop
        if not line.startswith("#"):
            break
        m = _VARIABLES_RE.match(line.strip())
        if m and declared is None:
            raw = m.group(1).strip()
            declared = (
                ()
                if raw in ("", "(none)", "none")
                else tuple(v.strip() for v in raw.split(",") if v.strip())
            )
    else:
        start = len(lines)
    body = "".join(lines[start:]).strip("\n")
    used = _fields(body, name)
    if declared is None:
        logger.debug("prompt '%s' declares no '# variables:' line; using %s", name, used)
    elif set(declared) != set(used):
        raise PromptError(
            f"prompt '{name}': header declares {sorted(declared)} "
            f"but the template uses {sorted(used)}"
        )
    return Prompt(name=name, template=body, variables=used, path=path or Path(name))


@functools.lru_cache(maxsize=64)
def _load_cached(path: str, mtime_ns: int) -> Prompt:
    p = Path(path)
    return parse_prompt(p.read_text(encoding="utf-8"), name=p.stem, path=p)


def load_prompt(name: str, *, folder: str | Path | None = None) -> Prompt:
    """Load and check the template `<prompts>/<name>.txt` (cached until the file changes).

    Raises:
        PromptError: no such template (the message lists the available ones), or it is malformed.
    """
    root = Path(folder) if folder is not None else prompts_dir()
    path = root / f"{name}.txt"
    if not path.is_file():
        raise PromptError(
            f"no prompt '{name}' in {root}; available: {', '.join(list_prompts(root)) or 'none'}"
        )
    return _load_cached(str(path), path.stat().st_mtime_ns)
