"""The OpenAI-compatible HTTP backend: an LLM served by vLLM, llama.cpp or Ollama elsewhere.

Why: one CPU box serves one request at a time; a GPU server batches many. fusionrec then only
sends text: `[llm] backend = "openai"`, `endpoint = "http://host:8000/v1"`, `server_model`,
and the name of an environment variable holding the API key (`api_key_env`; the key itself
never sits in a config file).

Scoring (`choice_logprobs`) asks `/v1/completions` for ONE token after `prefix + suffix` with
`logprobs` = `top_logprobs` (20 by default, the most vLLM allows unless raised). A choice's
log-probability is the logsumexp over the listed tokens whose text starts one of its words
(whitespace-only tokens never count). A choice with no listed token gets a floor: the lowest
listed log-probability, an upper bound of what it really has. So with a server, Yes/No scores
are exact when both answers are in the top list (the usual case after a Yes/No question) and
bounded otherwise. Servers that return completion logprobs: llama.cpp (`llama-server`, and
`python -m llama_cpp.server`, whose `logits_all` must stay on), vLLM; Ollama >= 0.12.11 per
its changelog (not tested here). A server that answers without logprobs raises
`NoLogprobsError`: the re-ranker then keeps the retriever's order and says why.

The prompt for scoring is rendered here with ChatML (`chat_template="chatml"`, what Qwen and
SmolLM2 use; "plain" joins the messages) because the completions API takes raw text;
generation goes through `/v1/chat/completions`, where the server applies its own template.

Every failure is a `ServerError` subclass (down, timeout, HTTP error, malformed body, no
logprobs), never a raw httpx exception.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from agent.llm.base import ChoiceScores, ProgressFn
from retrieval.errors import FusionrecError, MissingDependencyError, ModelLoadError

logger = logging.getLogger(__name__)

CHAT_TEMPLATES = ("chatml", "plain")


class ServerError(FusionrecError, RuntimeError):
    """The LLM server answered with an error or with something that is not what the API says."""


class ServerUnavailableError(ServerError):
    """Nothing answers at the endpoint (connection refused, unknown host)."""


class ServerTimeoutError(ServerError):
    """The server did not answer within `timeout_s`."""


class NoLogprobsError(ServerError):
    """The server answered a completion without the token log-probabilities scoring needs."""


def _base_url(endpoint: str) -> str:
    url = endpoint.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ModelLoadError(f"LLM endpoint must be an http(s) URL, got '{endpoint}'")
    return url if url.endswith("/v1") else url + "/v1"


def _choice_logprob(top: dict[str, float], words: Sequence[str], floor: float) -> float:
    """logsumexp of the listed tokens that start one of `words`; `floor` if none is listed."""
    vals = [lp for tok, lp in top.items() if tok.strip() and any(w.startswith(tok) for w in words)]
    return float(np.logaddexp.reduce(vals)) if vals else floor


class OpenAIHTTPLLM:
    """A model behind an OpenAI-compatible HTTP API (see the module docstring).

    Nothing is contacted at construction: the app starts while the server is down, and each
    request then fails with a clear `ServerError` (the re-ranker keeps the retriever order).
    """

    backend = "openai"

    def __init__(
        self,
        endpoint: str,
        *,
        model: str | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 30.0,
        top_logprobs: int = 20,
        concurrency: int = 4,
        chat_template: str = "chatml",
    ) -> None:
        """Args:
        endpoint: base URL, with or without the trailing "/v1".
        model: model name the server knows; None = the first one `/v1/models` lists.
        api_key_env: name of the environment variable holding the API key (None = no key).
        timeout_s: seconds per HTTP request (connect, read, write each).
        top_logprobs: alternatives asked for per scored position (vLLM's default cap is 20).
        concurrency: scoring requests in flight at once (servers batch them).
        chat_template: "chatml" or "plain": how `chat_text` renders a prompt for scoring.

        Raises:
            MissingDependencyError: httpx is not installed.
            ModelLoadError: bad endpoint or template, or the API key variable is unset.
        """
        try:
            import httpx
        except ImportError as e:  # pragma: no cover - httpx comes with gradio and chromadb
            raise MissingDependencyError(
                "'httpx' is not installed; install it with: pip install httpx"
            ) from e
        if chat_template not in CHAT_TEMPLATES:
            raise ModelLoadError(
                f"unknown chat_template '{chat_template}'; valid: {', '.join(CHAT_TEMPLATES)}"
            )
        self._httpx = httpx
        self.base_url = _base_url(endpoint)
        self._model = model
        self.name = model or self.base_url
        self.timeout_s = timeout_s
        self.top_logprobs = top_logprobs
        self.concurrency = max(1, concurrency)
        self.chat_template = chat_template
        headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise ModelLoadError(
                    f"the LLM server's API key is read from ${api_key_env}, which is not set"
                )
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout_s), follow_redirects=False
        )
        self._lock = threading.Lock()
        self._tokenize_route: str | None = None  # the tokenizer endpoint that worked, if any

    def __repr__(self) -> str:
        return f"OpenAIHTTPLLM(base_url={self.base_url!r}, model={self._model!r})"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    # -- HTTP ------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _request(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        httpx = self._httpx
        try:
            resp = self._client.request(method, url, json=body)
        except httpx.TimeoutException as e:
            raise ServerTimeoutError(
                f"the LLM server at {self.base_url} did not answer within {self.timeout_s:g} s"
            ) from e
        except httpx.TransportError as e:  # connection refused, DNS, reset
            raise ServerUnavailableError(
                f"cannot reach the LLM server at {self.base_url}: {type(e).__name__}: {e}"
            ) from e
        return self._json(resp)

    def _json(self, resp: Any) -> Any:
        if resp.status_code >= 400:
            hint = " (check the API key variable)" if resp.status_code in (401, 403) else ""
            raise ServerError(
                f"the LLM server answered HTTP {resp.status_code}{hint}: {resp.text[:200]!r}"
            )
        try:
            return resp.json()
        except ValueError as e:
            raise ServerError(
                f"the LLM server answered something that is not JSON: {resp.text[:200]!r}"
            ) from e

    @property
    def model(self) -> str:
        """The model name sent with each request (asked from `/v1/models` once if not set)."""
        with self._lock:
            if self._model is None:
                data = self._request("GET", self._url("/models"))
                try:
                    self._model = str(data["data"][0]["id"])
                except (KeyError, IndexError, TypeError) as e:
                    raise ServerError(
                        f"the LLM server lists no model at {self.base_url}/models; "
                        "set [llm] server_model"
                    ) from e
                self.name = self._model
            return self._model

    # -- text ------------------------------------------------------------------------------

    def chat_text(self, user: str, *, system: str | None = None) -> str:
        """The prompt text for one user turn (ChatML by default), ending where the answer starts."""
        messages = ([("system", system)] if system else []) + [("user", user)]
        if self.chat_template == "plain":
            return "\n\n".join(m for _, m in messages) + "\n\n"
        body = "".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in messages)
        return body + "<|im_start|>assistant\n"

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` by the server's tokenizer when it has an endpoint for it, else an
        estimate (4 characters a token, logged once)."""
        root = self.base_url[: -len("/v1")]
        routes = (
            [self._tokenize_route]
            if self._tokenize_route
            else [root + "/tokenize", self.base_url + "/extras/tokenize"]
        )
        body = {"model": self.model, "prompt": text, "content": text, "input": text}
        body["add_special_tokens"] = False
        for route in routes:
            if route == "estimate":
                break
            try:
                data = self._request("POST", route, body)
                n = data["count"] if "count" in data else len(data["tokens"])
                self._tokenize_route = route
                return int(n)
            except (ServerError, KeyError, TypeError):
                continue
        if self._tokenize_route != "estimate":
            logger.info("the LLM server has no tokenizer endpoint; estimating token counts")
            self._tokenize_route = "estimate"
        return max(1, math.ceil(len(text) / 4))

    # -- scoring ---------------------------------------------------------------------------

    def _top_logprobs(self, prompt: str) -> tuple[dict[str, float], int | None]:
        body = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": self.top_logprobs,
        }
        data = self._request("POST", self._url("/completions"), body)
        try:
            choice = data["choices"][0]
        except (KeyError, IndexError, TypeError) as e:
            raise ServerError(f"malformed completion from the LLM server: {str(data)[:200]}") from e
        lp = choice.get("logprobs") if isinstance(choice, dict) else None
        top: dict[str, float] = {}
        if isinstance(lp, dict):
            legacy = lp.get("top_logprobs")
            if isinstance(legacy, list) and legacy and isinstance(legacy[0], dict):
                top = {str(k): float(v) for k, v in legacy[0].items()}
            content = lp.get("content")  # the chat-style shape some servers use here too
            if not top and isinstance(content, list) and content:
                first = content[0].get("top_logprobs") or []
                top = {str(t["token"]): float(t["logprob"]) for t in first}
        if not top:
            raise NoLogprobsError(
                "the LLM server returned no logprobs for a completion; scoring needs a server "
                "that supports them (llama.cpp, vLLM)"
            )
        usage = data.get("usage") if isinstance(data, dict) else None
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return top, int(tokens) if isinstance(tokens, int | float) else None

    def choice_logprobs(
        self,
        prefix: str,
        suffixes: Sequence[str],
        choices: Sequence[Sequence[str]],
        *,
        batch_size: int = 20,
        on_progress: ProgressFn | None = None,
    ) -> ChoiceScores:
        """See `agent.llm.base.LLM.choice_logprobs`; one one-token completion per suffix.

        Up to `concurrency` requests are in flight; `on_progress` runs in this thread after
        each answer, and when it raises the requests not yet sent are cancelled.
        `batch_size` is ignored (the server batches).
        """
        if any(not s for s in suffixes):
            raise ValueError("every suffix must be non-empty")
        out = np.zeros((len(suffixes), len(choices)), dtype=np.float64)
        prompt_tokens: list[int] = []
        if not suffixes:
            return ChoiceScores(out, 0, 0, 0)
        self.model  # noqa: B018 - resolve the model name once before fanning out
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="llm-http")
        try:
            futures: dict[Future[tuple[dict[str, float], int | None]], int] = {
                pool.submit(self._top_logprobs, prefix + s): i for i, s in enumerate(suffixes)
            }
            pending = set(futures)
            done_count = 0
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    top, n_tok = fut.result()
                    floor = min(top.values())
                    for j, words in enumerate(choices):
                        out[futures[fut], j] = _choice_logprob(top, words, floor)
                    if n_tok is not None:
                        prompt_tokens.append(n_tok)
                    done_count += 1
                    if on_progress is not None:
                        on_progress(done_count / len(suffixes))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        computed = sum(prompt_tokens)
        n_pre = self.count_tokens(prefix) if prefix else 0
        suffix_tokens = max(len(suffixes), computed - n_pre * len(prompt_tokens))
        return ChoiceScores(out, n_pre, suffix_tokens, computed)

    # -- generation ------------------------------------------------------------------------

    def _gen_body(
        self, prompt: str, system: str | None, chat: bool, max_new_tokens: int, temperature: float
    ) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_new_tokens,
            "temperature": temperature,
        }
        if chat:
            body["messages"] = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": prompt}
            ]
            return self._url("/chat/completions"), body
        body["prompt"] = prompt if system is None else f"{system}\n\n{prompt}"
        return self._url("/completions"), body

    @staticmethod
    def _text(choice: Any, chat: bool, *, delta: bool = False) -> str:
        if not isinstance(choice, dict):
            raise ServerError(f"malformed choice from the LLM server: {str(choice)[:200]}")
        if not chat:
            text = choice.get("text")
        else:
            msg = choice.get("delta" if delta else "message") or {}
            text = msg.get("content") if isinstance(msg, dict) else None
        if text is None and not delta:
            raise ServerError(f"the LLM server's answer has no text: {str(choice)[:200]}")
        return text or ""

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 128,
        system: str | None = None,
        chat: bool = True,
        temperature: float = 0.0,
    ) -> str:
        """A completion through `/v1/chat/completions` (or `/v1/completions` when not chat)."""
        url, body = self._gen_body(prompt, system, chat, max_new_tokens, temperature)
        data = self._request("POST", url, body)
        try:
            choice = data["choices"][0]
        except (KeyError, IndexError, TypeError) as e:
            raise ServerError(f"malformed answer from the LLM server: {str(data)[:200]}") from e
        return self._text(choice, chat)

    def stream(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 128,
        system: str | None = None,
        chat: bool = True,
        temperature: float = 0.0,
    ) -> Iterator[str]:
        """Like `generate`, yielding the server-sent events' text pieces as they arrive."""
        httpx = self._httpx
        url, body = self._gen_body(prompt, system, chat, max_new_tokens, temperature)
        body["stream"] = True
        try:
            with self._client.stream("POST", url, json=body) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._json(resp)  # raises ServerError with the body
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank keep-alives, "event:" and ": comment" lines
                    payload = line[len("data:") :].strip()
                    if payload == "[DONE]":
                        return
                    try:
                        choice = json.loads(payload)["choices"][0]
                    except (ValueError, KeyError, IndexError, TypeError) as e:
                        raise ServerError(
                            f"malformed stream event from the LLM server: {payload[:200]!r}"
                        ) from e
                    piece = self._text(choice, chat, delta=True)
                    if piece:
                        yield piece
        except httpx.TimeoutException as e:
            raise ServerTimeoutError(
                f"the LLM server at {self.base_url} did not answer within {self.timeout_s:g} s"
            ) from e
        except httpx.TransportError as e:
            raise ServerUnavailableError(
                f"cannot reach the LLM server at {self.base_url}: {type(e).__name__}: {e}"
            ) from e


def load_openai(
    name: str,
    *,
    endpoint: str | None = None,
    server_model: str | None = None,
    api_key_env: str | None = None,
    timeout_s: float = 30.0,
    **_: Any,
) -> OpenAIHTTPLLM:
    """Loader for `agent.llm.BACKENDS["openai"]`.

    `server_model` names the model on the server; when None, `name` is used unless it is the
    packaged default, in which case the server's first model is taken.

    Raises:
        ModelLoadError: no endpoint configured, or the API key variable is unset.
    """
    if not endpoint:
        raise ModelLoadError("backend 'openai' needs [llm] endpoint, e.g. http://127.0.0.1:8000/v1")
    from agent.llm.weights import PACKAGED

    model = server_model or (None if name in PACKAGED else name)
    return OpenAIHTTPLLM(endpoint, model=model, api_key_env=api_key_env, timeout_s=timeout_s)
