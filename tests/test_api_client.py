"""The chat client and the openai backend against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import email.utils
import html
import io
import json
import logging
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from api_server import Reply, chat_reply, error_reply, scripted_server
from vlguard.api_client import ChatClient, image_data_url, parse_retry_after, user_message
from vlguard.errors import ConfigError
from vlguard.generation import make_backend
from vlguard.generation.base import GenerationRequest
from vlguard.generation.openai_api import OpenAIBackend
from vlguard.judges import JUDGES
from vlguard.judges.base import JudgeInput
from vlguard.redaction import REDACTED, redact_url

SECRET = "sk-test-SECRET-0123456789abcdefXYZ"
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("VLGUARD_TEST_KEY", SECRET)
    return "VLGUARD_TEST_KEY"


def fast_client(url: str, key_env: str = "VLGUARD_TEST_KEY", **kwargs: Any) -> ChatClient:
    settings: dict[str, Any] = {
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "max_total_wait": 30.0,
        "timeout": 10.0,
    }
    settings.update(kwargs)
    return ChatClient(url, "test-model", api_key_env=key_env, **settings)


def test_429_with_retry_after_is_honoured_then_succeeds(api_key: str) -> None:
    def respond(body: dict[str, Any], index: int) -> Reply:
        if index == 0:
            return error_reply(429, "Rate limit reached", "rate_limit_exceeded", {"Retry-After": "1"})
        return chat_reply("hi there")

    with scripted_server(respond) as server:
        result = fast_client(server.url, api_key).complete(HELLO, temperature=0)
    assert result.text == "hi there" and result.error is None and result.attempts == 2
    first, second = server.requests
    # the backoff alone would wait at most 0.05 s: only Retry-After explains a 1 s gap
    assert second.time - first.time >= 0.95
    assert first.path == "/v1/chat/completions"
    assert first.headers["Authorization"] == f"Bearer {SECRET}"
    assert first.body == {"model": "test-model", "messages": HELLO, "temperature": 0}


def test_5xx_and_connection_errors_are_retried(api_key: str) -> None:
    statuses = [500, 503, 502]

    def respond(body: dict[str, Any], index: int) -> Reply:
        return error_reply(statuses[index], "server error") if index < len(statuses) else chat_reply("ok")

    with scripted_server(respond) as server:
        result = fast_client(server.url, api_key).complete(HELLO)
    assert (result.text, result.attempts, len(server.requests)) == ("ok", 4, 4)


def test_gives_up_after_max_retries(api_key: str) -> None:
    with scripted_server(lambda body, i: error_reply(500, "always broken")) as server:
        result = fast_client(server.url, api_key, max_retries=2).complete(HELLO)
    assert len(server.requests) == 3
    assert (
        result.error is not None and "gave up after 3 attempts" in result.error and "HTTP 500" in result.error
    )
    assert result.text == "" and not result.content_policy


def test_gives_up_when_the_total_wait_would_be_exceeded(api_key: str) -> None:
    reply = error_reply(429, "slow down", headers={"Retry-After": "30"})
    with scripted_server(lambda body, i: reply) as server:
        start = time.monotonic()
        result = fast_client(server.url, api_key, max_total_wait=2.0).complete(HELLO)
        elapsed = time.monotonic() - start
    assert len(server.requests) == 1  # a 30 s wait would exceed the 2 s budget: no pointless sleep
    assert elapsed < 2.0
    assert result.error is not None and "max_total_wait" in result.error


def test_non_retryable_client_error_fails_at_once(api_key: str) -> None:
    with scripted_server(lambda body, i: error_reply(404, "model not found", "model_not_found")) as server:
        result = fast_client(server.url, api_key).complete(HELLO)
    assert len(server.requests) == 1
    assert result.error == "HTTP 404: model not found"


def test_connection_refused_and_timeout_are_errors_after_retries(api_key: str) -> None:
    with scripted_server(lambda body, i: chat_reply("x")) as server:
        closed_url = server.url
    result = fast_client(closed_url, api_key, max_retries=1).complete(HELLO)
    assert result.error is not None and "connection error" in result.error and result.attempts == 2

    with scripted_server(lambda body, i: Reply(200, {"choices": []}, delay=1.0)) as server:
        result = fast_client(server.url, api_key, max_retries=0, timeout=0.2).complete(HELLO)
    assert result.error is not None and "gave up after 1 attempts" in result.error


@pytest.mark.parametrize(
    "reply",
    [
        error_reply(
            400, "Your request was rejected as a result of our safety system.", "content_policy_violation"
        ),
        error_reply(
            400,
            "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
            "content_filter",
        ),
        chat_reply("", finish_reason="content_filter"),
    ],
)
def test_content_policy_refusal_is_recorded_as_such(api_key: str, reply: Reply) -> None:
    with scripted_server(lambda body, i: reply) as server:
        result = fast_client(server.url, api_key).complete(HELLO)
    assert result.content_policy is True
    assert result.error is None and result.finish_reason == "content_filter"
    assert len(server.requests) == 1  # never retried


def test_api_key_never_appears_in_logs_results_or_repr(
    api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    # servers echo the key in errors ("Incorrect API key provided: sk-...") in full or in part
    def respond(body: dict[str, Any], index: int) -> Reply:
        if index == 0:
            return error_reply(429, f"rate limited for key {SECRET}", headers={"Retry-After": "0"})
        if index == 1:
            return error_reply(503, f"overloaded for {SECRET[:10]}...{SECRET[-6:]}")
        return error_reply(401, f"Incorrect API key provided: {SECRET}", "invalid_api_key")

    caplog.set_level(logging.DEBUG)
    with scripted_server(respond) as server:
        client = fast_client(server.url, api_key)
        result = client.complete(HELLO)
    assert result.error is not None and "Incorrect API key provided" in result.error
    texts = [caplog.text, str(result), repr(client), str(client.describe())]
    for text in texts:
        assert SECRET not in text and SECRET[:8] not in text and SECRET[-6:] not in text
    assert "[REDACTED]" in result.error


def test_no_key_in_the_environment_sends_no_authorization(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLGUARD_NO_SUCH_KEY", raising=False)
    with scripted_server(lambda body, i: chat_reply("ok")) as server:
        assert fast_client(server.url, "VLGUARD_NO_SUCH_KEY").complete(HELLO).text == "ok"
    assert "Authorization" not in server.requests[0].headers


def test_complete_many_runs_concurrently_and_keeps_order(api_key: str) -> None:
    lock = threading.Lock()
    in_flight = {"now": 0, "max": 0}

    def respond(body: dict[str, Any], index: int) -> Reply:
        with lock:
            in_flight["now"] += 1
            in_flight["max"] = max(in_flight["max"], in_flight["now"])
        time.sleep(0.2)
        with lock:
            in_flight["now"] -= 1
        return chat_reply("echo " + body["messages"][0]["content"])

    conversations = [[{"role": "user", "content": f"q{i}"}] for i in range(10)]
    with scripted_server(respond) as server:
        results = fast_client(server.url, api_key, max_concurrency=4).complete_many(conversations)
    assert [r.text for r in results] == [f"echo q{i}" for i in range(10)]
    assert in_flight["max"] == 4


def test_backoff_is_full_jitter_within_the_exponential_ceiling(api_key: str) -> None:
    waits: list[float] = []
    with scripted_server(lambda body, i: error_reply(503, "busy")) as server:
        client = ChatClient(
            server.url,
            "m",
            api_key_env=api_key,
            max_retries=5,
            backoff_base=0.5,
            backoff_max=4.0,
            sleep=waits.append,
            rng=random.Random(0),
        )
        result = client.complete(HELLO)
    assert result.error is not None and len(waits) == 5
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0]
    assert all(0.0 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    # full jitter: not just the ceiling every time
    assert any(w < c * 0.9 for w, c in zip(waits, ceilings, strict=True))


def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "7"}) == 0.25
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 12, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=now) == pytest.approx(12.0)
    assert parse_retry_after({"Retry-After": email.utils.formatdate(now - 5, usegmt=True)}, now=now) == 0.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_images_become_base64_png_data_urls() -> None:
    from PIL import Image

    message = user_message("what is this?", [Image.new("RGB", (4, 3), "red")])
    image_part, text_part = message["content"]
    assert text_part == {"type": "text", "text": "what is this?"}
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (4, 3) and decoded.getpixel((0, 0)) == (255, 0, 0)
    assert (
        image_data_url(b"\xff\xd8raw", mime="image/jpeg")
        == "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8raw").decode()
    )
    assert user_message("text only") == {"role": "user", "content": "text only"}


# --- the openai generation backend -----------------------------------------------------------------


def test_openai_backend_generates_in_order_with_images(api_key: str) -> None:
    from PIL import Image

    def respond(body: dict[str, Any], index: int) -> Reply:
        content = body["messages"][-1]["content"]
        text = content if isinstance(content, str) else content[-1]["text"]
        return chat_reply(f"answer to {text}")

    with scripted_server(respond) as server:
        backend = make_backend(
            "openai",
            "vlm-x",
            base_url=server.url,
            api_key_env=api_key,
            system_prompt="be brief",
            max_concurrency=3,
        )
        requests = [
            GenerationRequest("s1", "first", Image.new("RGB", (8, 8), "blue")),
            GenerationRequest("s2", "second"),
            GenerationRequest("s3", "third", None, system="custom system"),
        ]
        generations = backend.generate(requests)
    assert [(g.sample_id, g.response, g.error) for g in generations] == [
        ("s1", "answer to first", None),
        ("s2", "answer to second", None),
        ("s3", "answer to third", None),
    ]
    bodies = {
        r.body["messages"][-1]["content"]
        if isinstance(r.body["messages"][-1]["content"], str)
        else "first": r.body
        for r in server.requests
    }
    first = bodies["first"]
    assert first["model"] == "vlm-x" and first["max_tokens"] == 256 and first["temperature"] == 0.0
    assert first["messages"][0] == {"role": "system", "content": "be brief"}
    assert first["messages"][1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert bodies["third"]["messages"][0] == {"role": "system", "content": "custom system"}
    description = backend.describe()
    assert description["model"] == "vlm-x" and description["api_key_env"] == api_key
    assert SECRET not in str(description)


def test_openai_backend_content_policy_and_errors(api_key: str) -> None:
    def respond(body: dict[str, Any], index: int) -> Reply:
        prompt = body["messages"][-1]["content"]
        if prompt == "blocked":
            return error_reply(400, "rejected by our safety system", "content_policy_violation")
        if prompt == "broken":
            return error_reply(400, "invalid request")
        return chat_reply("fine")

    with scripted_server(respond) as server:
        backend = OpenAIBackend("m", base_url=server.url, api_key_env=api_key)
        blocked, broken, fine = backend.generate(
            [
                GenerationRequest("a", "blocked"),
                GenerationRequest("b", "broken"),
                GenerationRequest("c", "ok"),
            ]
        )
    assert (blocked.response, blocked.error) == ("", None)
    assert blocked.meta["content_policy"] is True and blocked.meta["finish_reason"] == "content_filter"
    assert broken.error == "HTTP 400: invalid request" and broken.response == ""
    assert fine.response == "fine" and "content_policy" not in fine.meta
    # the refusal judge counts the API's refusal as a refusal, and the failure as an error
    from vlguard.records import Sample

    def sample(sid: str) -> Sample:
        return Sample(sid, "b", "unsafe", "p", None, None, None, None, True)

    labels = [
        j.label
        for j in JUDGES["refusal"]().judge(
            [JudgeInput.from_records(sample(g.sample_id), g) for g in (blocked, broken, fine)]
        )
    ]
    assert labels == ["refusal", "error", "compliance"]


def test_openai_backend_rejects_revision_and_adapter() -> None:
    with pytest.raises(ConfigError, match="revision"):
        OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", revision="abc")


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        ChatClient("localhost:8000/v1", "m")
    with pytest.raises(ConfigError, match="max_concurrency"):
        ChatClient("http://127.0.0.1:9/v1", "m", max_concurrency=0)


def test_a_key_cut_at_the_message_length_limit_is_still_redacted(
    api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Error messages are cut to length: the key must be redacted before the cut, or a key straddling
    # the limit would leave its first characters (too few to be recognised as the key) in the logs.
    padding = "x" * (300 - 7)

    def respond(body: dict[str, Any], index: int) -> Reply:
        return error_reply(429, padding + SECRET, headers={"Retry-After": "0"})

    caplog.set_level(logging.DEBUG)
    with scripted_server(respond) as server:
        result = fast_client(server.url, api_key, max_retries=0).complete(HELLO)
    assert result.error is not None and result.error.startswith("gave up after 1 attempts")
    for text in (caplog.text, str(result)):
        assert SECRET[:7] not in text


# A key with slashes, as some providers issue: JSON may escape them as "\/".
SLASHED_KEY = "sk-proj/Test+SECRET/0123456789abcdefXYZ"


def _key_forms(key: str) -> list[str]:
    """The key as a file or a page might carry it: verbatim, JSON-escaped, HTML-escaped, and its ends."""
    return [
        key,
        json.dumps(key)[1:-1].replace("/", "\\/"),
        "\\u0073" + key[1:],
        key[:8],
        key[-6:],
        html.escape(key),
    ]


def _echo_reply(mode: str, key: str, index: int) -> Reply:
    """What a server that echoes the key sends: in a JSON-escaped or slash-escaped error, or in an answer."""
    if mode == "answer":
        return chat_reply(f"Sure. By the way, your key is {key}. [[HARMLESS]]")
    if index % 2:
        return chat_reply("A harmless answer. [[HARMLESS]]")
    if mode == "json-escaped":
        message = "Incorrect API key provided: \\u0073" + json.dumps(key)[2:-1]
    else:  # "slash-escaped"
        message = "Incorrect API key provided: " + json.dumps(key)[1:-1].replace("/", "\\/")
    body = ('{"error": {"message": "' + message + '", "type": "invalid_request_error"}}').encode()
    return Reply(401, body)


@pytest.mark.parametrize("mode", ["json-escaped", "slash-escaped", "answer"])
def test_an_echoed_key_reaches_no_generation_judgment_output_report_or_log(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from vlguard.cli.main import main
    from vlguard.data.sample import sample_dataset_dir

    monkeypatch.setenv("VLGUARD_SLASHED_KEY", SLASHED_KEY)
    caplog.set_level(logging.DEBUG)
    with scripted_server(lambda body, index: _echo_reply(mode, SLASHED_KEY, index)) as server:
        api = [f"base_url={server.url}", "api_key_env=VLGUARD_SLASHED_KEY", "max_retries=0"]
        judge_api = [f"llm-judge.{option}" for option in (*api, "mode=harm")]
        run_dir, report_dir = tmp_path / "run", tmp_path / "report"
        eval_args = ["eval", "--backend", "openai", "--model", "m", "--bench", "vlguard-test"]
        eval_args += ["--data", str(sample_dataset_dir()), "--image-mode", "none", "--limit", "6"]
        eval_args += [
            "--run-dir",
            str(run_dir),
            "--judge",
            "refusal",
            "--judge",
            "llm-judge",
            "--no-progress",
        ]
        for option in api:
            eval_args += ["--backend-option", option]
        for option in judge_api:
            eval_args += ["--judge-option", option]
        assert main(eval_args) == 0
        assert main(["report", str(run_dir), "--out", str(report_dir)]) == 0
        responses = tmp_path / "responses.jsonl"
        responses.write_text(json.dumps({"id": "a", "prompt": "p", "response": "r"}) + "\n")
        judged = tmp_path / "judged.jsonl"
        judge_args = ["judge", "--judge", "llm-judge", "--input", str(responses), "--output", str(judged)]
        for option in judge_api:
            judge_args += ["--judge-option", option]
        assert main(judge_args) == 0
    assert (
        len(server.requests) >= 7 and server.requests[0].headers["Authorization"] == f"Bearer {SLASHED_KEY}"
    )
    written = [p for folder in (run_dir, report_dir) for p in folder.rglob("*") if p.is_file()] + [judged]
    assert {p.name for p in written} >= {"generations.jsonl", "llm-judge.jsonl", "report.html", "report.md"}
    texts = {str(p): p.read_bytes().decode("utf-8", "replace") for p in written}
    texts["log"] = caplog.text
    for name, text in texts.items():
        for form in _key_forms(SLASHED_KEY):
            assert form not in text, f"{name} holds the key ({form!r})"
    redacted = texts[str(run_dir / "generations.jsonl")] + texts[str(judged)]
    assert REDACTED in redacted  # the echo was there, and was redacted rather than dropped


def test_a_response_that_is_not_unicode_or_absurdly_nested_is_a_malformed_response(api_key: str) -> None:
    lone = (
        b'{"choices": [{"message": {"role": "assistant", "content": "hi \\ud800"}, "finish_reason": "stop"}]}'
    )
    deep = b'{"choices": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    replies = [Reply(200, lone), Reply(200, deep)]
    with scripted_server(lambda body, index: replies[index]) as server:
        client = fast_client(server.url, api_key, max_retries=0)
        results = [client.complete(HELLO), client.complete(HELLO)]
    for result in results:
        # One failed request, not a crash of the run nor text that cannot be written to a file.
        assert (
            result.text == "" and result.error is not None and result.error.startswith("malformed response")
        )
        result.error.encode("utf-8")


def test_token_usage_is_read_and_reaches_the_generation_meta(api_key: str) -> None:
    usage = {"prompt_tokens": 120, "completion_tokens": 7, "total_tokens": 127}
    with scripted_server(
        lambda body, i: chat_reply("ok", usage=usage if i == 0 else {"prompt_tokens": "x"})
    ) as server:
        client = fast_client(server.url)
        assert client.complete(HELLO).usage == {"prompt_tokens": 120, "completion_tokens": 7}
        assert client.complete(HELLO).usage is None  # not numbers: not counted
    with scripted_server(lambda body, i: chat_reply("ok", usage=usage)) as server:
        backend = OpenAIBackend("m", base_url=server.url, api_key_env=api_key)
        (generation,) = backend.generate([GenerationRequest("a", "hi")])
    assert generation.meta["prompt_tokens"] == 120 and generation.meta["completion_tokens"] == 7


def test_credentials_in_the_base_url_are_recorded_nowhere() -> None:
    url = "https://someone:hunter22@gateway.example/v1?api-key=abcdef123&deployment=x"
    assert redact_url(url) == f"https://{REDACTED}@gateway.example/v1?api-key={REDACTED}&deployment=x"
    client = ChatClient(url, "m", api_key_env="VLGUARD_NO_KEY", max_retries=0, timeout=2)
    assert "hunter22" not in repr(client) and "abcdef123" not in json.dumps(client.describe())
    # What a connection error says about the URL is redacted like a key.
    assert client._redact("nonnumeric port: 'someone:hunter22@gateway.example'") == (
        f"nonnumeric port: '{REDACTED}:{REDACTED}@gateway.example'"
    )
