"""RemarkCache (SQLite, content-addressed) and CachedPartner."""

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fake_openai_server import FakeOpenAIServer, ok, status

from saie_lib.partners import IncompleteBatchError, PartnerError, Reply, Sampling, local
from saie_lib.partners.api import OpenAIChatPartner
from saie_lib.partners.local import LocalModelPartner
from saie_lib.remark_cache import CachedPartner, RemarkCache, remark_key

REPO = Path(__file__).resolve().parents[1]
SAMPLING = Sampling(max_new_tokens=64, temperature=0.0, top_p=1.0, seed=0)


class CountingPartner:
    """Answers from the request itself and records every batch it is sent."""

    def __init__(self, model_id: str = "fake:counting"):
        self.model_id = model_id
        self.batches: list[list] = []

    def chat(self, conversations, sampling):
        self.batches.append([list(c) for c in conversations])
        return [Reply(f"{self.model_id} on {c[-1]['content']} seed={sampling.seed}", len(c), 7, 0.002)
                for c in conversations]

    @property
    def sent(self) -> int:
        return sum(len(batch) for batch in self.batches)


def conversation(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be adversarial."}, {"role": "user", "content": f"answer {i}"}]


@pytest.fixture(autouse=True)
def no_default_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SAIE_REMARK_CACHE", str(tmp_path / "default-remarks.sqlite"))  # never the user's ~/.cache/saie


@pytest.fixture
def cache(tmp_path):
    with RemarkCache(tmp_path / "not" / "yet" / "remarks.sqlite") as opened:
        yield opened


def test_second_run_makes_no_partner_calls(cache):
    partner = CachedPartner(CountingPartner(), cache)
    conversations = [conversation(i) for i in range(3)]
    first = partner.chat(conversations, SAMPLING)
    second = partner.chat(conversations, SAMPLING)
    assert partner.partner.sent == 3 and partner.calls_made == 3 and partner.hits == 3
    assert [r.cached for r in first] == [False] * 3 and [r.cached for r in second] == [True] * 3
    for fresh, stored in zip(first, second):
        assert (fresh.text, fresh.prompt_tokens, fresh.completion_tokens, fresh.cost_usd) == (
            stored.text, stored.prompt_tokens, stored.completion_tokens, stored.cost_usd)
    assert cache.stats() == {"entries": 3, "hits": 3, "misses": 3}
    assert partner.model_id == "fake:counting"


def test_misses_go_in_one_call_and_replies_keep_input_order(cache):
    partner = CachedPartner(CountingPartner(), cache)
    partner.chat([conversation(0), conversation(2)], SAMPLING)
    replies = partner.chat([conversation(4), conversation(0), conversation(3), conversation(2)], SAMPLING)
    assert partner.partner.batches[1] == [conversation(4), conversation(3)]
    assert [r.text.split(" on ")[1] for r in replies] == ["answer 4 seed=0", "answer 0 seed=0",
                                                         "answer 3 seed=0", "answer 2 seed=0"]
    assert [r.cached for r in replies] == [False, True, False, True]


def test_duplicates_in_a_batch_are_sent_once(cache):
    partner = CachedPartner(CountingPartner(), cache)
    a, b = conversation(1), conversation(2)
    replies = partner.chat([a, b, a, a], SAMPLING)
    assert partner.partner.batches == [[a, b]] and partner.calls_made == 2
    assert replies[0] == replies[2] == replies[3] != replies[1]


@pytest.mark.parametrize("changed", [Sampling(seed=1), Sampling(temperature=0.7), Sampling(top_p=0.9),
                                     Sampling(max_new_tokens=8)], ids=repr)
def test_other_sampling_is_a_miss(cache, changed):
    partner = CachedPartner(CountingPartner(), cache)
    partner.chat([conversation(0)], Sampling())
    [reply] = partner.chat([conversation(0)], changed)
    assert not reply.cached and partner.calls_made == 2


def test_other_partner_or_messages_is_a_miss_and_equal_numbers_hit(cache):
    CachedPartner(CountingPartner("fake:a"), cache).chat([conversation(0)], SAMPLING)
    other = CachedPartner(CountingPartner("fake:b"), cache)
    other.chat([conversation(0)], SAMPLING)
    edited = conversation(0)
    edited[0]["content"] += " "
    other.chat([edited], SAMPLING)
    assert other.calls_made == 2
    int_temperature = Sampling(max_new_tokens=64, temperature=0, top_p=1, seed=0)
    assert remark_key("fake:b", conversation(0), int_temperature) == remark_key("fake:b", conversation(0), SAMPLING)
    assert other.chat([conversation(0)], int_temperature)[0].cached


def test_cache_file_survives_reopening(tmp_path):
    path = tmp_path / "remarks.sqlite"
    with RemarkCache(path) as cache:
        CachedPartner(CountingPartner(), cache).chat([conversation(i) for i in range(4)], SAMPLING)
    with RemarkCache(path) as reopened:
        partner = CachedPartner(CountingPartner(), reopened)
        assert all(r.cached for r in partner.chat([conversation(i) for i in range(4)], SAMPLING))
        assert partner.partner.sent == 0 and reopened.stats()["entries"] == 4


def test_get_many_beyond_one_lookup_chunk(cache):
    replies = {f"key{i}": Reply(f"text {i}", i, 1) for i in range(1200)}
    cache.put_many(replies)
    found = cache.get_many([*replies, "absent"])
    assert len(found) == 1200 and found["key1199"] == Reply("text 1199", 1199, 1, None, cached=True)
    assert cache.stats() == {"entries": 1200, "hits": 1200, "misses": 1}


def test_wrong_number_of_replies_is_refused(cache):
    class Short(CountingPartner):
        def chat(self, conversations, sampling):
            return super().chat(conversations, sampling)[:-1]

    with pytest.raises(PartnerError, match="2 replies for 3"):
        CachedPartner(Short(), cache).chat([conversation(i) for i in range(3)], SAMPLING)
    assert cache.stats()["entries"] == 0


CRASHING_WRITER = textwrap.dedent("""
    import os, signal, sys
    from saie_lib.partners import Reply
    from saie_lib.remark_cache import RemarkCache

    class DiesMidWrite(dict):
        def items(self):
            yield "second", Reply("half", 1, 1)
            os.kill(os.getpid(), signal.SIGKILL)  # killed inside the open transaction

    cache = RemarkCache(sys.argv[1])
    cache.put_many({"first": Reply("complete", 3, 4, 0.5)})
    cache.put_many(DiesMidWrite())
""")


def test_entries_committed_before_a_crash_are_readable_after(tmp_path):
    path = tmp_path / "remarks.sqlite"
    done = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(path)], cwd=REPO, capture_output=True)
    assert done.returncode == -9, done.stderr.decode()
    with RemarkCache(path) as cache:
        assert cache.get_many(["first", "second"]) == {"first": Reply("complete", 3, 4, 0.5, cached=True)}
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_through_the_api_partner_the_server_is_asked_once(tmp_path, monkeypatch):
    fake_key = "sk-test-CACHEKEY-9876543210"
    monkeypatch.setenv("OPENAI_API_KEY", fake_key)
    conversations = [conversation(i) for i in range(3)]
    with FakeOpenAIServer() as server, RemarkCache(tmp_path / "remarks.sqlite") as cache:
        partner = CachedPartner(OpenAIChatPartner("fake-model", base_url=server.base_url), cache)
        first = partner.chat(conversations, SAMPLING)
        second = partner.chat(conversations, SAMPLING)
        assert server.request_count == 3
    assert [r.text for r in first] == [r.text for r in second] and all(r.cached for r in second)
    keys = [remark_key(partner.model_id, c, SAMPLING) for c in conversations]
    assert all(fake_key not in key for key in keys)
    for stored in tmp_path.iterdir():  # the database and its WAL / shared-memory files
        assert fake_key.encode() not in stored.read_bytes()


class SometimesEmpty(CountingPartner):
    """Answers "" (or a refusal) for the conversations whose question number is in `bad`."""

    def __init__(self, bad: dict[int, str]):
        super().__init__()
        self.bad = bad

    def chat(self, conversations, sampling):
        replies = super().chat(conversations, sampling)
        numbers = [int(c[-1]["content"].split()[-1]) for c in conversations]
        return [Reply(self.bad[n], 1, 0) if n in self.bad else r for n, r in zip(numbers, replies)]


def test_unusable_replies_are_never_cached_nor_returned(cache):
    partner = CachedPartner(SometimesEmpty({1: "", 3: "I'm sorry, I can't help with that."}), cache)
    with pytest.raises(IncompleteBatchError, match="2 unusable replies") as raised:
        partner.chat([conversation(i) for i in (3, 0, 1, 2, 0)], SAMPLING)
    assert raised.value.failed == [0, 2] and sorted(raised.value.replies) == [1, 3, 4]
    assert cache.stats()["entries"] == 2
    retry = CachedPartner(CountingPartner(), cache)
    assert [r.cached for r in retry.chat([conversation(i) for i in range(4)], SAMPLING)] == [True, False, True, False]
    assert retry.partner.batches == [[conversation(1), conversation(3)]]


def test_put_many_refuses_an_unusable_remark_and_stores_none(cache):
    with pytest.raises(ValueError, match="whitespace-only"):
        cache.put_many({"good": Reply("fine", 1, 1), "blank": Reply(" \n", 1, 1)})
    assert cache.stats()["entries"] == 0


OLD_SCHEMA = """CREATE TABLE remarks (key TEXT PRIMARY KEY, text TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, cost_usd REAL, created_at REAL NOT NULL)"""


def old_cache_file(path: Path, entries: dict[str, str]) -> Path:
    """A cache file as the code before checksums wrote it."""
    with sqlite3.connect(path) as db:
        db.execute(OLD_SCHEMA)
        db.executemany("INSERT INTO remarks VALUES (?, ?, 1, 0, NULL, 0)", list(entries.items()))
    db.close()
    return path


def test_an_empty_entry_left_by_older_code_is_a_miss(tmp_path):
    key = remark_key("fake:counting", conversation(0), SAMPLING)
    with RemarkCache(old_cache_file(tmp_path / "old.sqlite", {key: ""})) as cache:
        partner = CachedPartner(CountingPartner(), cache)
        [reply] = partner.chat([conversation(0)], SAMPLING)
        assert reply.text and not reply.cached and partner.calls_made == 1
        assert partner.chat([conversation(0)], SAMPLING)[0].cached


def test_replies_that_arrived_are_cached_when_the_batch_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-PARTIAL-0123456789")
    conversations = [conversation(i) for i in range(5)]
    with FakeOpenAIServer() as server, RemarkCache(tmp_path / "remarks.sqlite") as cache:
        server.script(ok(), ok(), *[status(503)] * 3)  # the third conversation fails for good
        api = OpenAIChatPartner("fake-model", base_url=server.base_url, max_retries=2, concurrency=1,
                                backoff_s=0.01, outage_wait_s=0)
        partner = CachedPartner(api, cache)
        with pytest.raises(IncompleteBatchError, match="partner_outage_wait_s") as raised:
            partner.chat([conversations[1], *conversations], SAMPLING)
        assert server.request_count == 5 and cache.stats()["entries"] == 2
        assert sorted(raised.value.replies) == [0, 1, 2] and raised.value.failed == [3, 4, 5]
        replies = partner.chat(conversations, SAMPLING)
        assert server.request_count == 5 + 3  # only the three that got no reply are asked again
    assert [r.cached for r in replies] == [True, True, False, False, False]


def test_a_local_partner_with_an_empty_remark_names_it_and_caches_the_rest(cache, monkeypatch):
    class Frozen:
        def requires_grad_(self, flag):
            return self

    class WordTokenizer:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": text.split()}

    monkeypatch.setattr(local, "render_chat", lambda tokenizer, chats: [c[-1]["content"] for c in chats])
    monkeypatch.setattr(local, "generate", lambda model, tokenizer, prompts, decoding, **kw:
                        ["" if p.endswith("answer 1") else f"remark on {p}" for p in prompts])
    info = {"name": "tiny", "source": "test", "dtype": "float32"}
    partner = CachedPartner(LocalModelPartner.from_loaded(Frozen(), WordTokenizer(), info), cache)
    with pytest.raises(IncompleteBatchError) as raised:
        partner.chat([conversation(i) for i in range(3)], SAMPLING)
    message = str(raised.value)
    assert "conversation 1 (empty remark)" in message and "answer 1" in message and "'partner'" in message
    assert raised.value.failed == [1] and cache.stats()["entries"] == 2


# --- a cache that heals: damaged files moved aside, edited entries refused, remarks cut to a budget --------------


def filled_cache(path: Path, n: int = 300) -> list:
    """A cache file holding n remarks (many SQLite pages), closed; returns the conversations."""
    conversations = [conversation(i) for i in range(n)]
    with RemarkCache(path) as cache:
        CachedPartner(CountingPartner(), cache).chat(conversations, SAMPLING)
    return conversations


@pytest.mark.parametrize("damage", ["truncated", "not_a_database"])
def test_a_damaged_cache_file_is_moved_aside_and_the_run_goes_on(tmp_path, capsys, damage):
    path = tmp_path / "remarks.sqlite"
    conversations = filled_cache(path)
    data = path.read_bytes()
    damaged = data[: len(data) // 2] if damage == "truncated" else b"these are not SQLite pages\n" * 100
    path.write_bytes(damaged)
    with RemarkCache(path) as cache:
        partner = CachedPartner(CountingPartner(), cache)
        replies = partner.chat(conversations[:5], SAMPLING)
        assert partner.calls_made == 5 and not any(r.cached for r in replies)  # asked again, counted
        assert cache.stats()["entries"] == 5
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith(f"WARNING: remark cache {path} was damaged (")
    assert cache.moved_aside.name in warning[0] and cache.moved_aside.name.startswith("remarks.sqlite.damaged-")
    assert cache.moved_aside.read_bytes() == damaged  # kept for a look, never read again
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_damage_found_while_in_use_heals_too(cache, monkeypatch, capsys):
    partner = CachedPartner(CountingPartner(), cache)
    partner.chat([conversation(0)], SAMPLING)
    original = RemarkCache._select
    calls = {"n": 0}

    def malformed_once(self, keys):
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.DatabaseError("database disk image is malformed")
        return original(self, keys)

    monkeypatch.setattr(RemarkCache, "_select", malformed_once)
    [reply] = partner.chat([conversation(0)], SAMPLING)
    assert not reply.cached and partner.calls_made == 2 and cache.moved_aside is not None
    assert "database disk image is malformed" in capsys.readouterr().err


def test_a_cache_path_that_is_a_folder_is_named(tmp_path):
    folder = tmp_path / "remarks.sqlite"
    folder.mkdir()
    with pytest.raises(ValueError, match=f"remark cache {folder} is a folder, not a file.*'remark_cache'"):
        RemarkCache(folder)


def test_a_cache_that_cannot_be_opened_names_the_file_and_the_remedy(tmp_path, monkeypatch):
    def refuse(path):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite3, "connect", refuse)
    with pytest.raises(ValueError, match=r"cannot open the remark cache .*remarks.sqlite \(unable to open database "
                                         r"file\); the cache only saves partner calls"):
        RemarkCache(tmp_path / "remarks.sqlite")


def test_an_edited_entry_fails_its_checksum_and_is_asked_again(cache):
    partner = CachedPartner(CountingPartner(), cache)
    [original] = partner.chat([conversation(0)], SAMPLING)
    with cache._db:
        cache._db.execute("UPDATE remarks SET text = 'Your answer is certainly right.'")
    [reply] = partner.chat([conversation(0)], SAMPLING)
    assert reply.text == original.text and not reply.cached and partner.calls_made == 2 and cache.rejected == 1
    assert partner.chat([conversation(0)], SAMPLING)[0].cached  # stored again, with a valid checksum


def test_entries_written_before_checksums_are_still_served(tmp_path):
    key = remark_key("fake:counting", conversation(0), SAMPLING)
    with RemarkCache(old_cache_file(tmp_path / "old.sqlite", {key: "a remark from before"})) as cache:
        partner = CachedPartner(CountingPartner(), cache)
        [reply] = partner.chat([conversation(0)], SAMPLING)
        assert reply.cached and reply.text == "a remark from before" and partner.calls_made == 0


class FirstWords:
    """A budget's tokenizer stand-in: one token per word."""

    name_or_path = "words"

    def __len__(self):
        return 1000

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False):
        import re

        spans = [m.span() for m in re.finditer(r"\S+", text)]
        return {"input_ids": list(range(len(spans))), "offset_mapping": spans}


class Budgeted(CountingPartner):
    def __init__(self, budget):
        super().__init__()
        self.budget = budget

    def chat(self, conversations, sampling):
        return [self.budget.apply(r) for r in super().chat(conversations, sampling)]


def test_a_cut_remark_is_served_under_its_own_budget_only(cache):
    from saie_lib.remark_budget import RemarkBudget

    three, five = RemarkBudget(FirstWords(), 3), RemarkBudget(FirstWords(), 5)
    [cut] = CachedPartner(Budgeted(three), cache).chat([conversation(0)], SAMPLING)
    assert cut.text == "fake:counting on answer" and cut.cut_chars > 0
    assert CachedPartner(Budgeted(three), cache).chat([conversation(0)], SAMPLING)[0] == \
        Reply(cut.text, cut.prompt_tokens, cut.completion_tokens, cut.cost_usd, cached=True, cut_chars=cut.cut_chars)
    wider = CachedPartner(Budgeted(five), cache)
    [reply] = wider.chat([conversation(0)], SAMPLING)  # a 3-word cut cannot stand for a 5-word one: asked again
    assert not reply.cached and wider.calls_made == 1 and reply.text == "fake:counting on answer 0 seed=0"


def test_a_whole_remark_is_served_cut_to_a_smaller_budget(cache):
    from saie_lib.remark_budget import RemarkBudget

    [whole] = CachedPartner(CountingPartner(), cache).chat([conversation(0)], SAMPLING)
    narrow = CachedPartner(Budgeted(RemarkBudget(FirstWords(), 2)), cache)
    [reply] = narrow.chat([conversation(0)], SAMPLING)
    assert reply.cached and narrow.calls_made == 0
    assert (reply.text, reply.cut_chars) == ("fake:counting on", len(whole.text) - len("fake:counting on"))


def test_the_run_metrics_record_a_repaired_cache_and_the_calls_it_cost(tmp_path):
    from types import SimpleNamespace

    from saie_lib.training_partner import partner_summary

    path = tmp_path / "remarks.sqlite"
    conversations = filled_cache(path, n=3)
    path.write_bytes(b"not a database")
    with RemarkCache(path) as cache:
        partner = CachedPartner(CountingPartner(), cache)
        replies = partner.chat(conversations, SAMPLING)
        rows = [{"remark": r.text, "stance": "supportive", "partner_tokens": 1} for r in replies]
        summary = partner_summary(SimpleNamespace(remark_budget=None, max_seq_len=256), partner, rows)
    assert summary["calls_this_session"] == 3 and summary["cache_hits_this_session"] == 0
    assert summary["cache_moved_aside"] == cache.moved_aside.name and "/" not in summary["cache_moved_aside"]
    assert summary["remark_budget"] == 64 and summary["remarks_cut"] == 0


def test_no_wal_journal_on_a_network_mount(tmp_path):
    """SQLite's WAL needs shared memory on one host: on Google Drive (a FUSE mount on Colab) or NFS the cache
    uses the rollback journal."""
    from saie_lib.remark_cache import journal_mode, mount_type

    mounts = tmp_path / "mounts"
    mounts.write_text("overlay / overlay rw 0 0\n"
                      "drive /content/drive fuse.drive rw 0 0\n"
                      "server:/export /mnt/nfs nfs4 rw 0 0\n")
    assert mount_type(Path("/content/drive/MyDrive/saie/cache"), str(mounts)) == "fuse.drive"
    assert journal_mode(Path("/content/drive/MyDrive/saie/cache/remarks.sqlite"), str(mounts)) == "DELETE"
    assert journal_mode(Path("/mnt/nfs/remarks.sqlite"), str(mounts)) == "DELETE"
    assert journal_mode(Path("/content/drivexyz/remarks.sqlite"), str(mounts)) == "WAL"
    assert journal_mode(Path("/root/.cache/saie/remarks.sqlite"), str(tmp_path / "unreadable")) == "WAL"
