"""Chat backends that write and judge samples: a local causal LM and any OpenAI-compatible endpoint.

Both take a list of chat conversations and return one answer each, in order, calling `on_answer`
as answers arrive so the caller can cache them (an interrupted run loses only what was in flight).
The template backend needs no model and has no class here.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Sequence

from uniguard.core.errors import UserError

Conversation = list[dict]
OnAnswer = Callable[[int, str], None]


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 80
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0


# ------------------------------------------------------------------------------------------- OpenAI
class OpenAIChat:
    """Chat completions over HTTP (vLLM, Ollama, llama.cpp server, OpenAI...), via httpx.

    Retries connection errors, timeouts, 429 and 5xx with exponential backoff (honouring
    Retry-After); other 4xx answers are configuration errors and stop at once. At most
    `concurrency` requests are in flight.
    """

    kind = "openai"

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 retries: int = 4, concurrency: int = 8, backoff: float = 0.5):
        if not base_url.startswith(("http://", "https://")):
            raise UserError(f"--base-url {base_url!r}: expected an http(s) URL such as http://localhost:8000/v1")
        if concurrency < 1 or retries < 0 or timeout <= 0:
            raise UserError("--concurrency must be >= 1, --retries >= 0 and --timeout > 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = os.environ.get(api_key_env, "")
        self.timeout = timeout
        self.retries = retries
        self.concurrency = concurrency
        self.backoff = backoff
        self._local = threading.local()

    @property
    def fingerprint(self) -> tuple:
        # The model decides the answers, not where it is served: a server restarted on another
        # port still reuses the cached answers.
        return ("openai", self.model)

    def complete(self, conversations: Sequence[Conversation], sampling: Sampling, on_answer: OnAnswer | None = None) -> list[str]:
        answers: list[str | None] = [None] * len(conversations)

        def one(index: int) -> None:
            answer = self._request(conversations[index], sampling, index)
            answers[index] = answer
            if on_answer:
                on_answer(index, answer)

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(one, i) for i in range(len(conversations))]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in futures:
                if future.done() and not future.cancelled() and future.exception():
                    raise future.exception()
        return [a if a is not None else "" for a in answers]

    def _client(self):
        import httpx

        if getattr(self._local, "client", None) is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._local.client = httpx.Client(timeout=self.timeout, headers=headers)
        return self._local.client

    def _request(self, messages: Conversation, sampling: Sampling, index: int) -> str:
        import httpx

        url = f"{self.base_url}/chat/completions"
        body = {"model": self.model, "messages": messages, "max_tokens": sampling.max_tokens,
                "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed + index}
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, problem))
            try:
                response = self._client().post(url, json=body)
            except httpx.TimeoutException:
                problem = f"no answer within {self.timeout:g}s"
                continue
            except httpx.TransportError as exc:
                problem = f"connection failed ({type(exc).__name__})"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                problem = f"HTTP {response.status_code}"
                self._local.retry_after = response.headers.get("retry-after")
                continue
            if response.status_code >= 400:
                raise UserError(f"{url}: HTTP {response.status_code} ({response.text[:200]!r}); check --base-url, --model and the API key variable")
            try:
                return response.json()["choices"][0]["message"]["content"] or ""
            except (ValueError, KeyError, IndexError, TypeError):
                problem = "an answer that is not an OpenAI chat completion"
        raise UserError(
            f"{url}: gave up after {self.retries + 1} attempts, last problem: {problem}; check that the server is up "
            f"(or raise --timeout / --retries), then rerun the same command: finished answers are cached and reused"
        )

    def _delay(self, attempt: int, problem: str) -> float:
        retry_after = getattr(self._local, "retry_after", None)
        self._local.retry_after = None
        if retry_after:
            try:
                return min(float(retry_after), 30.0)
            except ValueError:
                pass
        # Jitter spreads retries of concurrent requests so they do not hit a recovering server together.
        return self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random())


# -------------------------------------------------------------------------------------------- local
class LocalChat:
    """A causal LM run in-process with transformers (default: offline SmolLM2-135M-Instruct).

    Prompts are sorted by length and generated in batches with left padding, so a batch wastes
    little compute on padding.
    """

    kind = "local"

    def __init__(self, model: str | None = None, *, batch_size: int = 16, threads: int | None = None):
        self.model_name = model
        self.batch_size = batch_size
        self.threads = threads
        self._loaded = None

    @property
    def fingerprint(self) -> tuple:
        return ("local", self.model_name or "smollm2-135m-instruct")

    def _model(self):
        if self._loaded is None:
            from synth.local_lm import load_local_lm

            self._loaded = load_local_lm(self.model_name, threads=self.threads)
        return self._loaded

    def _encode(self, conversations: Sequence[Conversation]):
        _, tokenizer = self._model()
        prompts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
        return tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False, return_token_type_ids=False)

    def complete(self, conversations: Sequence[Conversation], sampling: Sampling, on_answer: OnAnswer | None = None) -> list[str]:
        import torch

        model, tokenizer = self._model()
        answers = [""] * len(conversations)
        order = sorted(range(len(conversations)), key=lambda i: len(str(conversations[i])))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            inputs = self._encode([conversations[i] for i in batch])
            torch.manual_seed(sampling.seed + start)
            with torch.inference_mode():
                output = model.generate(
                    **inputs, max_new_tokens=sampling.max_tokens, do_sample=sampling.temperature > 0,
                    temperature=max(sampling.temperature, 1e-5), top_p=sampling.top_p,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = output[:, inputs["input_ids"].shape[1]:]
            for i, tokens in zip(batch, new_tokens):
                answers[i] = tokenizer.decode(tokens, skip_special_tokens=True)
                if on_answer:
                    on_answer(i, answers[i])
        return answers

    def yes_probability(self, conversations: Sequence[Conversation]) -> list[float]:
        """P(Yes) / (P(Yes) + P(No)) for the first answer token: a judge score without sampling."""
        import torch

        model, tokenizer = self._model()
        yes = [tokenizer.encode(w, add_special_tokens=False)[0] for w in ("Yes", " Yes", "yes")]
        no = [tokenizer.encode(w, add_special_tokens=False)[0] for w in ("No", " No", "no")]
        scores: list[float] = []
        for start in range(0, len(conversations), self.batch_size):
            inputs = self._encode(conversations[start : start + self.batch_size])
            with torch.inference_mode():
                logits = model(**inputs).logits[:, -1, :]
            probs = torch.softmax(logits.float(), dim=-1)
            p_yes, p_no = probs[:, yes].sum(-1), probs[:, no].sum(-1)
            scores.extend((p_yes / (p_yes + p_no).clamp_min(1e-12)).tolist())
        return scores
