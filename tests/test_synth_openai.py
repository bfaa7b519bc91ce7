"""The OpenAI-compatible backend against real HTTP servers started on localhost:
a healthy one, a flaky one, one that always fails, a slow one, one that dies mid-run (resume)."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from synth.backends import OpenAIChat, Sampling
from synth.generate import BackendSpec, SynthSettings, run_synthesis
from synth.policy import load_policy
from uniguard.core.errors import UserError
from uniguard.core.io import read_jsonl


class FakeChatServer:
    """A chat-completions server: paraphrases by rewording, judges by a keyword, misbehaves on demand."""

    def __init__(self, *, fail_first: int = 0, always_fail: bool = False, delay: float = 0.0, die_after: int | None = None,
                 status: int = 500):
        self.fail_first, self.always_fail, self.delay, self.die_after, self.status = fail_first, always_fail, delay, die_after, status
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.answered = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    number = len(server.requests)
                try:
                    if server.delay:
                        time.sleep(server.delay)
                    dead = server.die_after is not None and server.answered >= server.die_after
                    if server.always_fail or number <= server.fail_first or dead:
                        status, reply = server.status, {"error": "unavailable"}
                    else:
                        with server._lock:
                            server.answered += 1
                        status, reply = 200, {"choices": [{"message": {"role": "assistant", "content": server.answer(body)}}]}
                finally:
                    # no longer in flight before the answer leaves: once the client has it, it may send
                    # its next request, and counting this one still would over-count concurrency
                    with server._lock:
                        server.in_flight -= 1
                self._send(status, reply)

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except BrokenPipeError:  # the client gave up (timeout test)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @staticmethod
    def answer(body: dict) -> str:
        last = body["messages"][-1]["content"]
        if last.startswith("Policy:"):
            message = last.split("Message:", 1)[1]
            return "Yes" if re.search(r"bomb|explosive", message, re.I) else "No"
        if last.startswith("Translate entirely into"):
            return "Traducido: " + last.split(":", 1)[1].strip()
        if last.startswith("Paraphrase:"):
            return f"Sure! Here is the paraphrase: Please tell me, {last[len('Paraphrase:'):].strip()}"
        return "I'm sorry, I can't help with that."

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _spec(server: FakeChatServer, **overrides) -> BackendSpec:
    options = dict(name="openai", model="fake-model", base_url=server.url, api_key_env="SYNTH_TEST_KEY", timeout=5.0,
                   retries=2, concurrency=4)
    options.update(overrides)
    return BackendSpec(**options)


def _settings(**overrides) -> SynthSettings:
    options = dict(n=40, seed=1, rewrite_fraction=0.5, reflect=True)
    options.update(overrides)
    return SynthSettings(**options)


def test_generation_and_self_reflection_through_a_healthy_server(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTH_TEST_KEY", "sk-test")
    with FakeChatServer() as server:
        report = run_synthesis([load_policy("violence_weapons")], _spec(server), _settings(translate=True), tmp_path)
    rows = [r for split in ("train", "validation", "test") for r in read_jsonl(tmp_path / f"{split}.jsonl")]
    stats = report["generation"]["per_policy"]["violence_weapons"]
    used = stats["model_outcomes"].get("paraphrase_used", 0)
    assert used > 0 and any(r["source"] == "openai" for r in rows)
    assert all(r["text"].startswith("Please tell me") for r in rows if r["source"] == "openai" and r["style"] != "non_english")  # lead-in stripped
    assert stats["model_outcomes"]["translate_used"] > 0
    assert all(r["text"].startswith("Traducido: ") for r in rows if r["source"] == "openai" and r["style"] == "non_english")
    assert all(h.get("Authorization") == "Bearer sk-test" for h in server.headers)
    assert server.requests[0]["model"] == "fake-model"
    # The judge says "Yes" only for bombs/explosives, so other unsafe samples are dropped and counted.
    reflection = report["reflection"]
    assert reflection["judged"] == stats["template_seeds"] and reflection["dropped"] > 0
    assert reflection["agreed"] + reflection["dropped"] + reflection["unsure"] == reflection["judged"]
    assert all(re.search(r"bomb|explosive", r["text"], re.I) for r in rows if r["label"] == 1 and r["style"] != "obfuscated")
    assert len(server.requests) == stats["model_requests"] + reflection["judged"]


def test_transient_errors_are_retried(tmp_path):
    with FakeChatServer(fail_first=3) as server:
        backend = OpenAIChat(server.url, "m", retries=3, backoff=0.01, concurrency=1)
        answers = backend.complete([[{"role": "user", "content": "Paraphrase: how do tides work"}]], Sampling())
    assert answers[0].endswith("how do tides work") and len(server.requests) == 4


def test_a_failing_server_gives_a_clear_error_after_bounded_retries():
    with FakeChatServer(always_fail=True) as server:
        backend = OpenAIChat(server.url, "m", retries=2, backoff=0.01, concurrency=2)
        with pytest.raises(UserError, match=r"gave up after 3 attempts.*HTTP 500.*rerun the same command"):
            backend.complete([[{"role": "user", "content": "Paraphrase: hi there friend"}]], Sampling())
    assert len(server.requests) == 3


def test_configuration_errors_are_not_retried():
    with FakeChatServer(always_fail=True, status=401) as server:
        backend = OpenAIChat(server.url, "m", retries=5, backoff=0.01)
        with pytest.raises(UserError, match="HTTP 401.*API key"):
            backend.complete([[{"role": "user", "content": "x"}]], Sampling())
    assert len(server.requests) == 1


def test_a_slow_server_times_out_quickly():
    with FakeChatServer(delay=2.0) as server:
        backend = OpenAIChat(server.url, "m", timeout=0.2, retries=1, backoff=0.01)
        started = time.perf_counter()
        with pytest.raises(UserError, match="no answer within 0.2s"):
            backend.complete([[{"role": "user", "content": "Paraphrase: slow one here"}]], Sampling())
        assert time.perf_counter() - started < 1.5


def test_concurrency_is_limited():
    with FakeChatServer(delay=0.1) as server:
        backend = OpenAIChat(server.url, "m", concurrency=3)
        conversations = [[{"role": "user", "content": f"Paraphrase: question number {i} about tides"}] for i in range(12)]
        answers = backend.complete(conversations, Sampling())
    assert [a.split()[-3] for a in answers] == [str(i) for i in range(12)]  # answers come back in order
    assert 1 < server.max_in_flight <= 3


def test_an_interrupted_run_resumes_from_cached_answers(tmp_path):
    policy = load_policy("financial_advice")
    settings = _settings(n=30, reflect=False)
    with FakeChatServer(die_after=6) as dying:
        with pytest.raises(UserError, match="rerun the same command"):
            run_synthesis([policy], _spec(dying, concurrency=1, retries=0), settings, tmp_path / "run")
    with FakeChatServer() as healthy:
        report = run_synthesis([policy], _spec(healthy, concurrency=1, retries=0), settings, tmp_path / "run")
    total = report["generation"]["per_policy"]["financial_advice"]["model_requests"]
    assert report["generation"]["per_policy"]["financial_advice"]["cached_answers_at_start"] == 6
    assert len(healthy.requests) == total - 6  # only what was missing
    with FakeChatServer() as fresh:
        run_synthesis([policy], _spec(fresh, concurrency=1), settings, tmp_path / "uninterrupted")
    for split in ("train", "validation", "test"):
        assert read_jsonl(tmp_path / "run" / f"{split}.jsonl") == read_jsonl(tmp_path / "uninterrupted" / f"{split}.jsonl")
