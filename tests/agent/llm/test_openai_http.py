"""OpenAI-compatible HTTP backend against a REAL server on loopback (`python -m llama_cpp.server`
serving SmolLM2's GGUF), and against tiny local servers that are down, slow or answer garbage."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import pytest

from agent.llm import load_llm
from agent.llm.base import LLM
from agent.llm.llamacpp import LlamaCppLLM, gguf_path
from agent.llm.openai_http import (
    NoLogprobsError,
    OpenAIHTTPLLM,
    ServerError,
    ServerTimeoutError,
    ServerUnavailableError,
    _choice_logprob,
)
from agent.rerank import UserContext, create_reranker
from agent.rerank.llm import YES_NO
from retrieval.candidates import Candidate
from retrieval.catalogue import Item
from retrieval.errors import ModelLoadError

USER = 'Liked:\n- "The Matrix"\n- "Blade Runner"\n\nWould this person enjoy each one? Yes or No.'
SUFFIXES = ['"Ghost in the Shell":', '"Sleepless in Seattle":', '"Aliens":']


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """`python -m llama_cpp.server` on a free loopback port, serving SmolLM2-135M."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf_path("smollm2-135m")),
        "--model_alias",
        "smollm2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "1024",
        "--n_threads",
        "1",
        "--n_threads_batch",
        "1",
        "--verbose",
        "False",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(url + "/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not start within 90 s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def local() -> LlamaCppLLM:
    return LlamaCppLLM(gguf_path("smollm2-135m"), n_ctx=1024, n_threads=1)


# ---- against the real server --------------------------------------------------------------------


def test_scores_match_the_same_model_run_locally(server: str, local: LlamaCppLLM) -> None:
    llm = OpenAIHTTPLLM(server)  # model name taken from /v1/models
    assert isinstance(llm, LLM) and llm.model == "smollm2"
    prefix = llm.chat_text(USER, system="You are a recommendation assistant.")
    assert prefix == local.chat_text(USER, system="You are a recommendation assistant.")
    shares: list[float] = []
    out = llm.choice_logprobs(prefix, SUFFIXES, YES_NO, on_progress=shares.append)
    ref = local.choice_logprobs(prefix, SUFFIXES, YES_NO)
    assert out.logprobs.shape == (3, 2) and np.isfinite(out.logprobs).all()
    # Yes/No are in the server's top 20 here, so the values are the model's, not the floor.
    # Not bit-equal: the server tokenises prefix + suffix in one piece and runs other batch
    # shapes, and llama.cpp's 8-bit activations differ by up to ~0.2 between batch shapes on
    # this tiny model (docs/llm_backends.md); a floor or a wrong token would be off by far more.
    np.testing.assert_allclose(out.logprobs, ref.logprobs, atol=0.25)
    assert out.logprobs.min() > -6
    assert shares[-1] == pytest.approx(1.0) and len(shares) == 3
    assert out.prefix_tokens == local.count_tokens(prefix)
    assert out.computed_tokens >= out.prefix_tokens


def test_generate_stream_and_tokens(server: str, local: LlamaCppLLM) -> None:
    llm = OpenAIHTTPLLM(server, model="smollm2")
    text = llm.generate("Name a colour.", max_new_tokens=12)
    assert text.strip()
    pieces = list(llm.stream("Name a colour.", max_new_tokens=12))
    # several server-sent events, one text (not compared with `text`: the server reuses its
    # cached prompt, a different batch shape, and greedy picks can flip on a 135M model)
    assert len(pieces) > 1 and "".join(pieces).strip()
    assert llm.generate("Once upon a time", chat=False, max_new_tokens=4)
    assert "".join(llm.stream("Once upon a time", chat=False, max_new_tokens=4))
    assert llm.count_tokens("The Matrix and Blade Runner") == local.count_tokens(
        "The Matrix and Blade Runner"
    )


def test_registry_and_reranker_use_it(server: str) -> None:
    llm = load_llm("smollm2", backend="openai", endpoint=server.removesuffix("/v1"))
    assert llm.backend == "openai"
    rr = create_reranker("llm-pointwise", llm=llm, alpha=1.0, time_budget_s=None)
    items = [Item("1", "Aliens"), Item("2", "Babe"), Item("3", "Heat")]
    cands = [Candidate(it.id, score=1.0 - 0.1 * r, rank=r + 1) for r, it in enumerate(items)]
    out = rr.rank(UserContext(liked=("The Matrix",)), cands, items)
    assert out.fallback_reason is None and sorted(out.item_ids()) == ["1", "2", "3"]


# ---- faults -------------------------------------------------------------------------------------


class FakeServer:
    """A loopback HTTP server whose answers are set per test: slow, garbage, no logprobs..."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.delay = 0.0
        self.seen: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:  # quiet test output
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._send(200, json.dumps({"data": [{"id": "fake"}]}).encode())

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                outer.seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
                time.sleep(outer.delay)
                mode = outer.mode
                if mode == "garbage":
                    self._send(200, b"<html>gateway says hi</html>", "text/html")
                elif mode == "error":
                    self._send(500, b'{"error": "model crashed"}')
                elif mode == "no-logprobs":
                    choice = {"text": " Yes", "index": 0, "logprobs": None}
                    self._send(200, json.dumps({"choices": [choice]}).encode())
                elif mode == "empty":
                    self._send(200, b"{}")
                elif mode == "bad-stream" and body.get("stream"):
                    self._send(200, b"data: {not json}\n\n", "text/event-stream")
                elif mode == "chat-shape":  # logprobs in the chat-completions shape
                    top = [{"token": " Yes", "logprob": -0.2}, {"token": "No", "logprob": -1.9}]
                    lp = {"content": [{"token": " Yes", "logprob": -0.2, "top_logprobs": top}]}
                    choice = {"text": " Yes", "logprobs": lp}
                    self._send(200, json.dumps({"choices": [choice]}).encode())
                else:
                    top = {" Yes": -0.3, "Yes": -2.0, " Y": -4.0, " ": -5.0, " maybe": -6.0}
                    choice = {"text": " Yes", "logprobs": {"top_logprobs": [top]}}
                    usage = {"prompt_tokens": 10}
                    self._send(200, json.dumps({"choices": [choice], "usage": usage}).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def fake() -> Iterator[FakeServer]:
    srv = FakeServer()
    yield srv
    srv.close()


def test_choice_matching_and_floor() -> None:
    top = {" Yes": -0.3, "Yes": -2.0, " Y": -4.0, " ": -5.0, "No": -7.0}
    assert _choice_logprob(top, ("Yes", " Yes", "yes"), -9.0) == pytest.approx(
        float(np.logaddexp.reduce([-0.3, -2.0, -4.0]))  # " " (whitespace only) never counts
    )
    assert _choice_logprob(top, ("No", " No"), -9.0) == -7.0
    assert _choice_logprob(top, ("Maybe",), -9.0) == -9.0


def test_absent_choice_gets_the_floor(fake: FakeServer) -> None:
    out = OpenAIHTTPLLM(fake.url).choice_logprobs("p", ["a", "b"], YES_NO)
    assert out.logprobs[0, 1] == pytest.approx(-6.0)  # No not listed: lowest listed value
    assert out.logprobs[0, 0] > out.logprobs[0, 1]
    assert out.computed_tokens == 20


def test_chat_shaped_logprobs_are_read(fake: FakeServer) -> None:
    fake.mode = "chat-shape"
    out = OpenAIHTTPLLM(fake.url, model="m").choice_logprobs("p", ["a"], YES_NO)
    np.testing.assert_allclose(out.logprobs[0], [-0.2, -1.9])


def test_server_down_is_a_clear_error() -> None:
    llm = OpenAIHTTPLLM(f"http://127.0.0.1:{free_port()}/v1", model="m", timeout_s=2)
    with pytest.raises(ServerUnavailableError, match="cannot reach"):
        llm.choice_logprobs("p", ["a"], YES_NO)
    with pytest.raises(ServerUnavailableError):
        llm.generate("hi")
    with pytest.raises(ServerUnavailableError):
        list(llm.stream("hi"))


def test_slow_server_times_out_and_reranker_falls_back(fake: FakeServer) -> None:
    fake.delay = 3.0
    llm = OpenAIHTTPLLM(fake.url, model="m", timeout_s=0.5)
    start = time.monotonic()
    with pytest.raises(ServerTimeoutError, match="0.5 s"):
        llm.generate("hi")
    assert time.monotonic() - start < 2.5
    rr = create_reranker("llm-pointwise", llm=llm, alpha=1.0, time_budget_s=10)
    items = [Item("1", "Aliens"), Item("2", "Babe")]
    cands = [Candidate(it.id, score=1.0 - 0.1 * r, rank=r + 1) for r, it in enumerate(items)]
    out = rr.rank(UserContext(liked=("The Matrix",)), cands, items)
    assert out.item_ids() == ["1", "2"] and "ServerTimeoutError" in (out.fallback_reason or "")


@pytest.mark.parametrize(
    ("mode", "error", "match"),
    [
        ("garbage", ServerError, "not JSON"),
        ("error", ServerError, "HTTP 500"),
        ("no-logprobs", NoLogprobsError, "no logprobs"),
        ("empty", ServerError, "malformed"),
    ],
)
def test_malformed_answers_are_clear_errors(
    fake: FakeServer, mode: str, error: type[Exception], match: str
) -> None:
    fake.mode = mode
    with pytest.raises(error, match=match):
        OpenAIHTTPLLM(fake.url, model="m").choice_logprobs("p", ["a", "b"], YES_NO)


def test_bad_stream_and_bad_generation(fake: FakeServer) -> None:
    fake.mode = "bad-stream"
    with pytest.raises(ServerError, match="malformed stream"):
        list(OpenAIHTTPLLM(fake.url, model="m").stream("hi"))
    fake.mode = "empty"
    with pytest.raises(ServerError, match="malformed"):
        OpenAIHTTPLLM(fake.url, model="m").generate("hi")


def test_api_key_from_the_named_variable(fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONREC_TEST_KEY", "s3cret")
    OpenAIHTTPLLM(fake.url, model="m", api_key_env="FUSIONREC_TEST_KEY").choice_logprobs(
        "p", ["a"], YES_NO
    )
    assert fake.seen[-1]["auth"] == "Bearer s3cret"
    monkeypatch.delenv("FUSIONREC_TEST_KEY")
    with pytest.raises(ModelLoadError, match="FUSIONREC_TEST_KEY"):
        OpenAIHTTPLLM(fake.url, api_key_env="FUSIONREC_TEST_KEY")
    with pytest.raises(ModelLoadError, match="endpoint"):
        load_llm("m", backend="openai")
    with pytest.raises(ModelLoadError, match="http"):
        OpenAIHTTPLLM("127.0.0.1:8000")
