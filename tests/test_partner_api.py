"""OpenAIChatPartner against a real local HTTP server that fakes the OpenAI chat API."""

import pickle
import sys
import time
import traceback

import pytest
from fake_openai_server import FakeOpenAIServer, answer_for, content, garbage, ok, status

from saie_lib.partners import IncompleteBatchError, PartnerError, Reply, Sampling, unusable_reason
from saie_lib.partners.api import OpenAIChatPartner, _redact
from saie_lib.partners.local import build_partner

FAKE_KEY = "sk-test-FAKEKEY-0123456789abcdef"
SAMPLING = Sampling(max_new_tokens=32, temperature=0.7, top_p=0.9, seed=11)


@pytest.fixture(autouse=True)
def api_env(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("SAIE_REMARK_CACHE", str(tmp_path / "remarks.sqlite"))  # never the user's ~/.cache/saie


@pytest.fixture
def server():
    with FakeOpenAIServer() as running:
        yield running


def make_partner(server: FakeOpenAIServer, **options) -> OpenAIChatPartner:
    settings = {"timeout_s": 5, "max_retries": 2, "backoff_s": 0.01, "max_wait_s": 1.0, "outage_wait_s": 0,
                **options}
    return OpenAIChatPartner("fake-model", base_url=server.base_url, **settings)


def conversation(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are a discussion partner."},
            {"role": "user", "content": f"question {i}"}]


def expected_reply(i: int, sampling: Sampling = SAMPLING) -> dict:
    body = {"model": "fake-model", "messages": conversation(i), "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed}
    return answer_for(body)


def test_batch_keeps_input_order_and_counts_usage_and_cost(server):
    server.script(ok(0.3), ok(0.2), ok(0.1))  # early requests answer last
    partner = make_partner(server, price_per_1k_tokens=(0.5, 1.5))
    replies = partner.chat([conversation(i) for i in range(5)], SAMPLING)
    for i, reply in enumerate(replies):
        expected = expected_reply(i)
        usage = expected["usage"]
        assert reply.text == expected["choices"][0]["message"]["content"]
        assert f"question {i} #" in reply.text
        assert (reply.prompt_tokens, reply.completion_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
        assert reply.cost_usd == pytest.approx((usage["prompt_tokens"] * 0.5 + usage["completion_tokens"] * 1.5) / 1000)
        assert reply.cached is False
    sent = server.requests[0]
    assert {k: sent[k] for k in ("model", "max_tokens", "temperature", "top_p", "seed")} == {
        "model": "fake-model", "max_tokens": 32, "temperature": 0.7, "top_p": 0.9, "seed": 11}


def test_no_price_means_no_cost_and_empty_batch_sends_nothing(server):
    partner = make_partner(server)
    assert partner.chat([conversation(0)], SAMPLING)[0].cost_usd is None
    assert partner.chat([], SAMPLING) == []
    assert server.request_count == 1


def test_concurrency_is_bounded_and_used():
    with FakeOpenAIServer(answer_delay_s=0.15) as server:
        partner = make_partner(server, concurrency=3)
        replies = partner.chat([conversation(i) for i in range(9)], SAMPLING)
    assert len(replies) == 9 and server.request_count == 9
    assert server.max_in_flight == 3


def test_timeout_then_success(server):
    server.script(ok(delay_s=6))  # the retry must not itself time out on a loaded machine: 1 s of slack
    started = time.monotonic()
    [reply] = make_partner(server, timeout_s=1.0).chat([conversation(0)], SAMPLING)
    assert time.monotonic() - started < 4
    assert reply.text == expected_reply(0)["choices"][0]["message"]["content"]
    assert server.request_count == 2


@pytest.mark.parametrize("transient", [status(429), status(500), status(503), garbage("not_json"),
                                       garbage("no_choices")], ids=lambda step: f"{step.kind}-{step.code}")
def test_transient_failure_then_success(server, transient):
    server.script(transient)
    [reply] = make_partner(server).chat([conversation(0)], SAMPLING)
    assert reply.text == expected_reply(0)["choices"][0]["message"]["content"]
    assert server.request_count == 2


def test_retry_after_is_honoured(server):
    server.script(status(429, retry_after="0.5"))
    started = time.monotonic()
    make_partner(server, backoff_s=0.01, max_wait_s=5).chat([conversation(0)], SAMPLING)
    assert time.monotonic() - started >= 0.5
    assert server.request_count == 2


def test_retry_after_is_capped(server):
    server.script(status(429, retry_after="600"))
    started = time.monotonic()
    make_partner(server, backoff_s=0.01, max_wait_s=0.2).chat([conversation(0)], SAMPLING)
    assert 0.2 <= time.monotonic() - started < 3
    assert server.request_count == 2


def test_persistent_server_error_fails_after_bounded_attempts(server):
    server.script(*[status(500)] * 10)
    with pytest.raises(PartnerError) as raised:
        make_partner(server, max_retries=3).chat([conversation(0)], SAMPLING)
    assert server.request_count == 4
    message = str(raised.value)
    assert "4 attempts" in message and server.base_url in message and "HTTP 500" in message
    for field in ("partner_max_retries", "partner_timeout_s", "partner_outage_wait_s", "partner_concurrency"):
        assert field in message
    assert isinstance(raised.value, IncompleteBatchError) and raised.value.failed == [0]


@pytest.mark.parametrize("code", [400, 401, 404])
def test_client_errors_fail_at_once(server, code):
    server.script(status(code))
    with pytest.raises(PartnerError, match=f"HTTP {code}"):
        make_partner(server, max_retries=4).chat([conversation(0)], SAMPLING)
    assert server.request_count == 1


def test_api_key_never_leaks(server):
    server.script(status(401))  # the fake echoes the key it received, as real servers partly do
    partner = make_partner(server, max_retries=0)
    with pytest.raises(PartnerError) as raised:
        partner.chat([conversation(0)], SAMPLING)
    assert "Incorrect API key provided: ***" in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__context__ is None
    shown = "".join(traceback.format_exception(raised.value))
    assert FAKE_KEY not in shown
    for view in (repr(partner), str(vars(partner)), pickle.dumps(partner).decode("latin-1")):
        assert FAKE_KEY not in view
    assert FAKE_KEY not in partner.model_id


def test_missing_key_names_the_variable(server, monkeypatch):
    monkeypatch.delenv("MY_PARTNER_KEY", raising=False)
    with pytest.raises(PartnerError, match="MY_PARTNER_KEY"):
        make_partner(server, api_key_env="MY_PARTNER_KEY")


def test_local_server_needs_no_key(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    [reply] = make_partner(server, api_key_env=None).chat([conversation(1)], SAMPLING)
    assert isinstance(reply, Reply) and "question 1" in reply.text


def test_model_id_and_base_url_from_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url + "/")
    partner = OpenAIChatPartner("fake-model")
    assert partner.model_id == f"api:fake-model@{server.base_url}"
    assert partner.chat([conversation(2)], SAMPLING)[0].text.startswith("re: question 2")


def test_missing_openai_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(ImportError, match=r'pip install "saie\[api\]"'):
        OpenAIChatPartner("fake-model", base_url="http://127.0.0.1:9/v1")


@pytest.mark.parametrize("field,value", [("max_retries", -1), ("concurrency", 0), ("timeout_s", 0),
                                         ("outage_wait_s", -1)])
def test_impossible_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        OpenAIChatPartner("fake-model", base_url="http://127.0.0.1:9/v1", **{field: value})


UNUSABLE = [content(""), content("  \n\t "), content(None), content("I'm sorry, I can't help with that."),
            content("As an AI language model, I cannot take sides.")]


@pytest.mark.parametrize("unusable", UNUSABLE, ids=lambda step: repr(step.text))
def test_unusable_reply_is_retried_like_a_fault(server, unusable):
    server.script(unusable)
    partner = make_partner(server)
    [reply] = partner.chat([conversation(0)], SAMPLING)
    assert reply.text == expected_reply(0)["choices"][0]["message"]["content"]
    assert server.request_count == 2 and (partner.requests_sent, partner.retries) == (2, 1)


def test_persistent_unusable_replies_are_never_returned(server):
    server.script(*[content("   ")] * 3)
    partner = make_partner(server, max_retries=2, outage_wait_s=30)  # not an outage: no outage wait
    started = time.monotonic()
    with pytest.raises(IncompleteBatchError) as raised:
        partner.chat([conversation(0)], SAMPLING)
    assert time.monotonic() - started < 5 and server.request_count == 3
    assert "whitespace-only remark" in str(raised.value) and "partner_max_retries" in str(raised.value)
    assert raised.value.replies == {} and raised.value.failed == [0]


REFUSALS = ["I'm sorry, I can't help with that.", "I\u2019m sorry, but I cannot assist with that request.",
            "Sorry, I can't comply.", "I can't help with that.", "I am unable to help you with this.",
            "As an AI language model, I have no opinion.", "  as an AI, I must decline."]
REMARKS = ["I'm sorry, but I can't agree: 7 x 8 is 56, not 54.", "I can't help noticing that step 2 drops a sign.",
           "I cannot see where the 3 comes from.", "Your answer is right. As an AI tutor, I agree.",
           "Sorry, your total is off by one.", "As an aid: check the units."]


@pytest.mark.parametrize("text", REFUSALS)
def test_refusal_rule_catches_refusals(text):
    assert unusable_reason(text).startswith("a refusal")


@pytest.mark.parametrize("text", REMARKS)
def test_refusal_rule_keeps_remarks_that_disagree(text):
    assert unusable_reason(text) is None


@pytest.mark.parametrize("text,reason", [(None, "no text"), ("", "empty"), (" \n", "whitespace-only")])
def test_empty_replies_are_unusable(text, reason):
    assert unusable_reason(text).startswith(reason)


REDACT_KEY = "sk-secret-0123456789abcdef"


@pytest.mark.parametrize("echoed", [REDACT_KEY, "sk-sec\u2026", "sk-sec...", "sk-secret-01234***", "sk-secre",
                                    "sk-secret-0123****************cdef", "****************cdef", "...89abcdef"])
def test_redaction_catches_cut_and_masked_keys(echoed):
    shown = _redact(f"Incorrect API key provided: {echoed} (see the docs)", REDACT_KEY)
    assert shown == "Incorrect API key provided: *** (see the docs)"


def test_redaction_leaves_other_text_alone():
    text = "HTTP 401: bad key sk-se (5 characters), model sk-other, wait... abc"
    assert _redact(text, REDACT_KEY) == text and _redact(text, None) == text


@pytest.mark.parametrize("echo", ["full", "prefix", "ellipsis", "openai"])
def test_key_echoed_whole_cut_or_masked_never_leaks(server, echo):
    server.script(status(401, echo=echo))
    with pytest.raises(PartnerError) as raised:
        make_partner(server, max_retries=0).chat([conversation(0)], SAMPLING)
    shown = "".join(traceback.format_exception(raised.value))
    assert "Incorrect API key provided: ***" in shown
    assert FAKE_KEY[:6] not in shown and FAKE_KEY[-4:] not in shown


def test_retries_are_counted(server):
    server.script(status(500), status(503))
    partner = make_partner(server, concurrency=1)
    partner.chat([conversation(i) for i in range(3)], SAMPLING)
    assert server.request_count == 5 and (partner.requests_sent, partner.retries) == (5, 2)


def test_outage_wait_resends_after_the_retries_are_spent(server):
    server.script(*[status(503)] * 8)  # two rounds of 2 conversations x 2 attempts
    partner = make_partner(server, max_retries=1, concurrency=2, outage_wait_s=10, max_wait_s=0.05)
    replies = partner.chat([conversation(0), conversation(1)], SAMPLING)
    assert [r.text for r in replies] == [expected_reply(i)["choices"][0]["message"]["content"] for i in (0, 1)]
    assert server.request_count == 10 and partner.retries == 8


def test_a_client_error_ends_the_batch_and_keeps_the_replies_that_arrived(server):
    server.script(ok(), status(400))
    with pytest.raises(IncompleteBatchError, match="HTTP 400") as raised:
        make_partner(server, concurrency=1, outage_wait_s=10).chat([conversation(i) for i in range(3)], SAMPLING)
    assert server.request_count == 2  # the third conversation was never sent
    assert list(raised.value.replies) == [0] and raised.value.failed == [1, 2]


def test_build_partner_passes_the_api_settings(server):
    partner = build_partner("api:fake-model", None, base_url=server.base_url, timeout_s=7, max_retries=2,
                            concurrency=3, outage_wait_s=11)
    assert (partner.timeout_s, partner.max_retries, partner.concurrency, partner.outage_wait_s) == (7, 2, 3, 11)
    default = build_partner("api:fake-model", None, base_url=server.base_url)
    assert (default.timeout_s, default.max_retries, default.concurrency, default.outage_wait_s) == (60, 4, 8, 60)
