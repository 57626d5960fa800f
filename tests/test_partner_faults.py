"""Fault injection: the API partner behind CachedPartner against a fake server that fails 60% of requests
(500, 503, 429, timeouts, empty / blank / null content, a refusal, non-JSON), and through outages.
Every server here listens on 127.0.0.1 only and stops answering after a bounded number of requests."""

import socket
import threading
import time

import pytest
from fake_openai_server import FAULT_KINDS, FakeOpenAIServer, Faults

from saie_lib.partners import IncompleteBatchError, Sampling, unusable_reason
from saie_lib.partners.api import OpenAIChatPartner
from saie_lib.remark_cache import CachedPartner, RemarkCache

SAMPLING = Sampling(max_new_tokens=48, temperature=0.0, seed=3)
FAULT_SEED = 20240611
PROMPTS = 32
# A normal reply must never take the client's timeout, even on a loaded CI machine (a client-side timeout on a
# reply the server did not count as a fault breaks the exact accounting below); a "timeout" fault hangs longer.
CLIENT_TIMEOUT_S = 5.0
HANG_S = 2 * CLIENT_TIMEOUT_S


@pytest.fixture(autouse=True)
def api_env(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-FAULTS-0123456789abcdef")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("SAIE_REMARK_CACHE", str(tmp_path / "default-remarks.sqlite"))  # never the user's ~/.cache/saie


def conversation(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Is 17 x {i} = {17 * i}? Remark on it. #{i}"}]


def api_partner(base_url: str, **options) -> OpenAIChatPartner:
    settings = {"timeout_s": CLIENT_TIMEOUT_S, "max_retries": 20, "concurrency": 8, "backoff_s": 0.01,
                "max_wait_s": 0.05, "outage_wait_s": 30, **options}
    return OpenAIChatPartner("fake-model", base_url=base_url, **settings)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_sixty_percent_faults_finish_unattended_and_nothing_is_paid_twice(tmp_path):
    conversations = [conversation(i) for i in range(PROMPTS)]
    faults = Faults(rate=0.6, seed=FAULT_SEED, timeout_delay_s=HANG_S)
    with FakeOpenAIServer(faults=faults) as server, RemarkCache(tmp_path / "remarks.sqlite") as cache:
        api = api_partner(server.base_url)
        started = time.monotonic()
        replies = CachedPartner(api, cache).chat(conversations + conversations[:5], SAMPLING)  # repeats asked once
        wall_s = time.monotonic() - started
        requests = server.request_count
        print(f"\nfault run: {requests} requests, {PROMPTS} distinct prompts, {api.retries} retries, "
              f"{wall_s:.2f} s; faults {dict(sorted(server.fault_counts.items()))}")
        assert all(unusable_reason(r.text) is None and r.text.startswith("re: Is 17") for r in replies)
        assert cache.stats()["entries"] == PROMPTS
        assert requests - PROMPTS == api.retries == sum(server.fault_counts.values())
        assert api.requests_sent == requests
        assert set(server.answered.values()) == {1} and len(server.answered) == PROMPTS  # no reply paid twice
        assert set(server.fault_counts) == set(FAULT_KINDS) and 0.45 < api.retries / requests < 0.75
        again = CachedPartner(api_partner(server.base_url), cache)
        second = again.chat(conversations, SAMPLING)
        assert server.request_count == requests and again.calls_made == 0
    assert [r.text for r in second] == [r.text for r in replies[:PROMPTS]] and all(r.cached for r in second)


def test_a_long_outage_waits_and_resumes(tmp_path):
    port = free_port()
    came_back: list[FakeOpenAIServer] = []
    timer = threading.Timer(1.5, lambda: came_back.append(FakeOpenAIServer(port=port).__enter__()))
    conversations = [conversation(i) for i in range(3)]
    api = api_partner(f"http://127.0.0.1:{port}/v1", max_retries=2, backoff_s=0.05, max_wait_s=0.2,
                      outage_wait_s=20, timeout_s=2)
    timer.start()
    try:
        with RemarkCache(tmp_path / "remarks.sqlite") as cache:
            started = time.monotonic()
            replies = CachedPartner(api, cache).chat(conversations, SAMPLING)
            waited_s = time.monotonic() - started
            assert cache.stats()["entries"] == 3
    finally:
        timer.join()
        for server in came_back:
            server.__exit__(None, None, None)
    assert 1.5 <= waited_s < 15 and all(r.text.startswith("re: Is 17") for r in replies)
    assert came_back[0].request_count == 3  # refused connections never reached it; nothing asked twice
    assert api.requests_sent - api.retries == 3 and api.retries >= 3


def test_an_outage_longer_than_the_wait_fails_naming_the_config_fields(tmp_path):
    api = api_partner(f"http://127.0.0.1:{free_port()}/v1", max_retries=1, backoff_s=0.05, max_wait_s=0.2,
                      outage_wait_s=1.0)
    with RemarkCache(tmp_path / "remarks.sqlite") as cache:
        started = time.monotonic()
        with pytest.raises(IncompleteBatchError) as raised:
            CachedPartner(api, cache).chat([conversation(i) for i in range(2)], SAMPLING)
        elapsed_s = time.monotonic() - started
        assert cache.stats()["entries"] == 0
    message = str(raised.value)
    assert 1.0 <= elapsed_s < 6 and "APIConnectionError" in message and raised.value.failed == [0, 1]
    for field in ("partner_outage_wait_s (now 1)", "partner_max_retries (now 1)", "partner_timeout_s"):
        assert field in message


@pytest.mark.slow
def test_training_against_sixty_percent_faults_finishes_and_pays_each_remark_once(data_dir, tmp_path, monkeypatch):
    """The whole training loop (tiny model) with an API partner whose server fails 60% of requests: the run
    finishes with no manual step under the configured retry budget, and every successful reply was asked for
    exactly once (successful requests == distinct remarks in the cache)."""
    from saie_lib import artifacts
    from saie_lib.config import TrainConfig, load_config
    from saie_lib.partners import api, local
    from saie_lib.stages.train import train

    class QuickBackoff(api.OpenAIChatPartner):  # the test's only change: retry waits of milliseconds, not seconds
        def __init__(self, *args, **options):
            super().__init__(*args, backoff_s=0.01, max_wait_s=0.05, **options)

    monkeypatch.setattr(local, "OpenAIChatPartner", QuickBackoff)  # what build_partner constructs
    with FakeOpenAIServer(faults=Faults(rate=0.6, seed=FAULT_SEED, timeout_delay_s=HANG_S)) as server:
        cfg = load_config("train-tiny", cls=TrainConfig, task="gsm8k", data_dir=str(data_dir),
                          results_root=str(tmp_path), remark_cache=str(tmp_path / "remarks.sqlite"),
                          partner="api:fake-partner", partner_base_url=server.base_url,
                          partner_timeout_s=CLIENT_TIMEOUT_S, partner_max_retries=25, partner_concurrency=4,
                          partner_outage_wait_s=10.0)
        out = train(cfg, progress=False)
        failed = sum(server.fault_counts.values())
        succeeded = server.request_count - failed
    metrics = artifacts.read_json(artifacts.run_file(out, "metrics"))
    with RemarkCache(tmp_path / "remarks.sqlite") as cache:
        distinct = cache.stats()["entries"]
    print(f"\ntraining fault run: {server.request_count} requests, {failed} failed, {distinct} distinct remarks, "
          f"{metrics['partner']['remarks']} remarks in transcripts")
    assert metrics["n"] > 0 and metrics["partner"]["remarks"] > 0
    assert failed > 0.4 * server.request_count
    assert succeeded == distinct  # requests - distinct = retries of failed requests only
