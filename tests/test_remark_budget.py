"""Partner remarks cut to a token budget before they enter the learner's context (saie_lib.remark_budget): a
partner that answers with a megabyte is cut and counted, one that is only whitespace or control characters after
the cut is asked again like an empty one."""

import dataclasses

import pytest
from fake_openai_server import FakeOpenAIServer, content, ok

from saie_lib.artifacts import read_json, read_jsonl, run_file
from saie_lib.partners import Reply, Sampling, unusable_reason
from saie_lib.partners.api import OpenAIChatPartner
from saie_lib.remark_budget import RemarkBudget

MEGABYTE = 1_000_000
SAMPLING = Sampling(max_new_tokens=32, temperature=0.0, seed=3)


@pytest.fixture(autouse=True)
def api_env(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-BUDGET-0123456789abcdef")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture(scope="module")
def tokenizer(tiny):
    return tiny[1]


def tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def conversation(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"answer {i}"}]


def test_a_megabyte_is_cut_to_the_budget_and_counted(tokenizer):
    text = "The answer looks wrong to me, because " + "the sum is off " * (MEGABYTE // 15)
    budget = RemarkBudget(tokenizer, 40)
    kept, cut = budget.cut(text)
    assert kept == text[: len(kept)] and 30 < tokens(tokenizer, kept) <= 41  # one character's tokens of slack
    assert cut == len(text) - len(kept) > 0.99 * MEGABYTE
    reply = budget.apply(Reply(text, 3, 250_000))
    assert (reply.text, reply.cut_chars, reply.completion_tokens) == (kept, cut, 250_000)


def test_a_remark_within_the_budget_is_untouched(tokenizer):
    budget = RemarkBudget(tokenizer, 64)
    assert budget.cut("I disagree: 3 + 4 is 7, not 8.") == ("I disagree: 3 + 4 is 7, not 8.", 0)
    reply = Reply("short", 1, 1)
    assert budget.apply(reply) is reply


def test_a_tokenizer_without_offsets_is_cut_by_decoding():
    class SlowWords:
        name_or_path = "words"

        def __len__(self):
            return 100

        def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False):
            if return_offsets_mapping:
                raise NotImplementedError("no offsets in a Python tokenizer")
            return {"input_ids": text.split()}

        def decode(self, ids):
            return " ".join(ids)

    budget = RemarkBudget(SlowWords(), 3)
    assert budget.cut("one two three four five") == ("one two three", 10)
    assert budget.budget_id == "3 tokens of words (100 in vocabulary)"


@pytest.mark.parametrize("text, reason", [
    ("\x00\x01\x1b\x7f\x9b\r\n", "no visible text"),
    ("\u200b\u200b \n", "no visible text"),
    (" \t\n", "whitespace-only"),
    ("fine \x00", None),
])
def test_only_whitespace_or_control_characters_is_unusable(text, reason):
    found = unusable_reason(text)
    assert found is None if reason is None else reason in found


def make_partner(server, tokenizer, max_tokens=32):
    return OpenAIChatPartner("fake-model", base_url=server.base_url, timeout_s=30, max_retries=2, backoff_s=0.01,
                             outage_wait_s=0, budget=RemarkBudget(tokenizer, max_tokens))


def test_a_one_megabyte_reply_from_a_real_server_is_cut(tokenizer):
    with FakeOpenAIServer(long_replies=MEGABYTE) as server:
        [reply] = make_partner(server, tokenizer).chat([conversation(0)], SAMPLING)
        assert server.request_count == 1
    assert reply.text.startswith("re: answer 0 #") and tokens(tokenizer, reply.text) <= 33
    assert reply.cut_chars > 0.99 * MEGABYTE


@pytest.mark.parametrize("bad", ["\n\t " * 300_000 + "a remark after a megabyte of blanks", "\x00\x01\x02" * 10],
                         ids=["blank-within-the-budget", "control-characters"])
def test_a_reply_unusable_after_the_cut_is_asked_again(tokenizer, bad):
    with FakeOpenAIServer() as server:
        server.script(content(bad), ok())
        partner = make_partner(server, tokenizer)
        [reply] = partner.chat([conversation(1)], SAMPLING)
        assert server.request_count == 2 and partner.retries == 1
    assert reply.text.startswith("re: answer 1 #") and reply.cut_chars == 0


@pytest.mark.slow
def test_training_against_a_partner_that_answers_a_megabyte(data_dir, tmp_path, monkeypatch):
    """The issue's crash ("DefaultCPUAllocator: can't allocate memory"): every remark is cut to the budget before
    the learner reads it, counted in the transcript and the metrics; the cache holds the cut remarks."""
    from saie_lib.config import TrainConfig, load_config
    from saie_lib.stages.train import train

    monkeypatch.setenv("SAIE_TEST_PARTNER_KEY", "sk-test-not-a-real-key-000000000000")
    cache = tmp_path / "remarks.sqlite"
    with FakeOpenAIServer(long_replies=MEGABYTE) as server:
        cfg = load_config("train-tiny", cls=TrainConfig, task="gsm8k", data_dir=str(data_dir),
                          results_root=str(tmp_path), remark_cache=str(cache), partner="api:fake-partner",
                          partner_base_url=server.base_url, partner_api_key_env="SAIE_TEST_PARTNER_KEY")
        out = train(cfg, progress=False)
    transcripts = read_jsonl(run_file(out, "transcripts"))
    partner = read_json(run_file(out, "metrics"))["partner"]
    assert transcripts and all(r["remark_cut_chars"] > 0.99 * MEGABYTE for r in transcripts)
    assert partner["remarks_cut"] == partner["remarks"] == len(transcripts)
    assert partner["remark_budget"] == cfg.max_seq_len // 4 == 64
    assert cache.stat().st_size < MEGABYTE  # the cut remarks, not the megabytes
    assert "remark_budget" not in read_json(run_file(out, "config"))["identity"]  # None: omitted
    assert dataclasses.replace(cfg, remark_budget=64).identity() != cfg.identity()


def test_a_local_partner_cuts_too_and_names_a_remark_that_is_blank_after_the_cut(tokenizer, monkeypatch):
    from saie_lib.partners import IncompleteBatchError, local

    class Frozen:
        def requires_grad_(self, flag):
            return self

    texts = {"answer 0": "A fine remark. " * 400, "answer 1": "\n" * 5000 + "too late"}
    monkeypatch.setattr(local, "render_chat", lambda tok, chats: [c[-1]["content"] for c in chats])
    monkeypatch.setattr(local, "generate", lambda model, tok, prompts, decoding, **kw: [texts[p] for p in prompts])
    partner = local.LocalModelPartner.from_loaded(Frozen(), tokenizer, {"name": "t", "source": "test"},
                                                  budget=RemarkBudget(tokenizer, 16))
    [reply] = partner.chat([conversation(0)], SAMPLING)
    assert tokens(tokenizer, reply.text) <= 17 and reply.cut_chars > 5000
    with pytest.raises(IncompleteBatchError, match=r"conversation 0 \((whitespace-only|no visible text)"):
        partner.chat([conversation(1)], SAMPLING)
