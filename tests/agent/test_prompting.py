"""Prompt templates: every shipped template loads, declares its fields, and renders."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.prompting import PromptError, list_prompts, load_prompt, parse_prompt, prompts_dir


def test_shipped_prompts_exist() -> None:
    names = list_prompts()
    for required in ("system", "rerank_pointwise", "rerank_listwise", "rerank_generate"):
        assert required in names, f"prompts/{required}.txt is missing from {prompts_dir()}"


@pytest.mark.parametrize("name", list_prompts())
def test_every_template_renders(name: str) -> None:
    prompt = load_prompt(name)
    values = {v: f"<<{v}>>" for v in prompt.variables}
    text = prompt.render(**values)
    assert text.strip()
    for v in prompt.variables:
        assert f"<<{v}>>" in text
    assert not text.lstrip().startswith("#"), "header comments must not reach the model"


def test_rerank_templates_declare_expected_fields() -> None:
    # the candidate is not a field: the answer is started with it (agent/rerank_llm.py)
    assert set(load_prompt("rerank_pointwise").variables) == {"history", "disliked", "request"}
    assert set(load_prompt("rerank_listwise").variables) == {
        "history",
        "disliked",
        "request",
        "candidates",
        "labels",
    }
    assert load_prompt("system").variables == ()


def test_render_rejects_missing_and_extra_fields() -> None:
    prompt = load_prompt("rerank_pointwise")
    with pytest.raises(PromptError, match="missing"):
        prompt.render(history="h")
    with pytest.raises(PromptError, match="unexpected"):
        prompt.render(history="h", disliked="d", request="r", item="i", extra="x")


def test_header_must_match_body() -> None:
    with pytest.raises(PromptError, match="declares"):
        parse_prompt("# variables: a, b\nHello {a}", name="bad")
    ok = parse_prompt("# about\n# variables: a\nHello {a} and {a}", name="ok")
    assert ok.variables == ("a",)
    assert ok.render(a="x") == "Hello x and x"


@pytest.mark.parametrize(
    "body", ["Hi {}", "Hi {0}", "Hi {a.b}", "Hi {a[0]}", "Hi {a!r}", "Hi {a:>5}", "Hi {a"]
)
def test_malformed_fields_are_refused(body: str) -> None:
    with pytest.raises(PromptError):
        parse_prompt(body, name="bad")


def test_braces_in_values_are_not_reinterpreted() -> None:
    text = load_prompt("rerank_listwise").render(
        history="{item}", disliked="(none)", request="{0}", candidates="A. x", labels="A"
    )
    assert "{item}" in text and "{0}" in text


def test_unknown_prompt_lists_available(tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text("# variables: (none)\nHello")
    with pytest.raises(PromptError, match="one"):
        load_prompt("two", folder=tmp_path)
    assert load_prompt("one", folder=tmp_path).render() == "Hello"
