"""Every command line the README shows is one the CLI accepts (issue 11 #9).

Each `fusionrec ...` line in a README code block (fenced or indented) and each inline
`fusionrec ...` code span is parsed by the real parser (a dry run: nothing executes);
`[optional]` parts are included and `...` dropped. `serve` passes its words to app.py's
parser, so those are checked too. `make X` lines must name a Makefile target (`make -n`),
and `python -m X` spans must name an importable module.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _code_lines(text: str) -> list[str]:
    """Lines inside fenced blocks and 4-space indented blocks, plus inline code spans."""
    out: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            out.append(line.strip())
        else:
            out += re.findall(r"`([^`]+)`", line)
    return out


def _words(line: str) -> list[str]:
    """A README line as argv: comment dropped, [optional] parts kept, `...` dropped."""
    line = re.sub(r"\s+#.*$", "", line)
    line = line.replace("[", " ").replace("]", " ").replace("...", " ")
    return shlex.split(line)


def _commands(prog: str) -> list[str]:
    found = [c for c in _code_lines(README) if c.split()[:1] == [prog]]
    return list(dict.fromkeys(found))


FUSIONREC = _commands("fusionrec")


def test_the_readme_shows_commands() -> None:
    assert len(FUSIONREC) >= 8 and any(c.startswith("fusionrec serve") for c in FUSIONREC)


@pytest.mark.parametrize("line", FUSIONREC)
def test_readme_fusionrec_line_parses(line: str) -> None:
    from agent.cli import parse_args

    argv = _words(line)[1:]
    try:
        args = parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"README line is rejected by the CLI (exit {e.code}): {line}")
    assert callable(args.func)


def test_serve_passes_host_and_port_to_the_app() -> None:
    """The README's `fusionrec serve --host 127.0.0.1 --port 7860` failed: unrecognized --host."""
    import app
    from agent.cli import parse_args

    args = parse_args(["serve", "--host", "127.0.0.1", "--port", "7860"])
    served = app.parse_args(args.app_args)
    assert (served.host, served.port) == ("127.0.0.1", 7860)
    with pytest.raises(SystemExit):
        parse_args(["serve", "--no-such-flag"])


@pytest.mark.parametrize("line", _commands("make"))
def test_readme_make_targets_exist(line: str) -> None:
    target = _words(line)[1]
    proc = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, f"{line}: {proc.stderr.strip()}"


@pytest.mark.parametrize("line", _commands("python"))
def test_readme_python_modules_exist(line: str) -> None:
    words = _words(line)
    if words[1:2] == ["-m"]:
        assert importlib.util.find_spec(words[2]) is not None, line
    else:
        assert (ROOT / words[1]).is_file(), line
