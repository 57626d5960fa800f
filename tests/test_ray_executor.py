"""The study on Ray (`reproduce --executor ray`): the graph of runs comes from the notebooks' own config functions;
on a real local Ray cluster with two worker processes the tiny study's records equal a serial run's, a worker
killed mid-training is retried and resumes to the same records, a run that cannot succeed fails once while the
rest goes on, and two workers sharing the remark cache leave every entry valid."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, _cache_dir_sharing_models

from saie_lib.experiments import EXPERIMENTS, seed_run_dirs
from saie_lib.partners import Reply, Sampling
from saie_lib.profiles import load_profile
from saie_lib.record_compare import differences, record_files
from saie_lib.remark_cache import CachedPartner, RemarkCache, remark_key
from saie_lib.run_graph import study_graph

SAMPLING = Sampling(max_new_tokens=8, temperature=0.0, top_p=1.0, seed=0)


# --- the graph (no cluster) ----------------------------------------------------------------------------------


def test_graph_is_every_run_the_profile_implies_once(data_dir, tmp_path):
    profile = load_profile("tiny")
    locations = {"data_dir": str(data_dir), "results_root": str(tmp_path)}
    nodes = study_graph(profile, **locations)
    labels = [n.label for n in nodes]
    seeds, conditions = len(profile.seeds), len(profile.conditions)
    assert seeds >= 2  # robustness runs per seed, its base model once
    assert len(labels) == len(set(labels)) == 3 * seeds * conditions + conditions + seeds * conditions - (seeds - 1)
    for name in ("math", "commonsense", "multidomain"):  # the run dirs the notebooks' experiment_finished reads
        expected = seed_run_dirs(profile, EXPERIMENTS[name], **locations)
        assert {(n.seed, n.condition): n.run_dir for n in nodes if n.experiment == name} == {
            (seed, c): d for seed, runs in expected.items() for c, d in runs.items()}
    inference = [n for n in nodes if n.experiment == "multiagent"]
    assert [n.condition for n in inference] == list(profile.conditions)
    assert set(inference[0].needs) == {f"commonsense/seed0/{c}" for c in profile.trained_conditions}
    robustness = [n for n in nodes if n.experiment == "robustness"]
    assert [n.label for n in robustness if n.condition == "base"] == ["robustness/seed0/base"]
    for n in robustness:  # the models trained by its own seed's runs, of both challenged tasks
        assert {tuple(need.split("/")[:2]) for need in n.needs} == {("commonsense", f"seed{n.seed}"),
                                                                   ("math", f"seed{n.seed}")}
    order = {label: i for i, label in enumerate(labels)}
    assert all(order[need] < order[n.label] for n in nodes for need in n.needs)
    assert not any(n.gpu for n in nodes)  # the tiny profile runs on the CPU


def test_a_seeds_challenge_runs_need_only_that_seeds_training(data_dir, tmp_path):
    """A robustness run of seed 0 can start while seed 1 still trains (run_node asks for its own seed only)."""
    from saie_lib.experiments import challenge_configs

    profile = load_profile("tiny")
    locations = {"data_dir": str(data_dir), "results_root": str(tmp_path)}
    for name in ("math", "commonsense"):  # seed 0 finished, seed 1 not
        for run_dir in seed_run_dirs(profile, EXPERIMENTS[name], **locations)[0].values():
            run_dir.mkdir(parents=True)
            (run_dir / "metrics.json").write_text("{}")
    assert set(challenge_configs(profile, [0], **locations)) == {0}
    with pytest.raises(RuntimeError, match="seed 1"):
        challenge_configs(profile, **locations)


def test_runs_that_ask_the_local_partner_follow_each_other_in_serial_order(data_dir, tmp_path):
    """The tiny profile's partner is `self`: within a training experiment, the runs with remarks from it start
    one after another (seed, then condition, as the serial loop), the others start free."""
    from saie_lib.conditions import NO_PARTNER_POLICIES, condition_fields

    profile = load_profile("tiny")
    nodes = [n for n in study_graph(profile, data_dir=str(data_dir), results_root=str(tmp_path))
             if n.experiment == "math"]
    asking = [n for n in nodes if n.condition != "base"
              and condition_fields(n.condition)["remark_policy"] not in NO_PARTNER_POLICIES]
    assert len(asking) >= 2 * len(profile.seeds)
    assert [n.after for n in asking] == [()] + [(previous.label,) for previous in asking[:-1]]
    assert all(n.after == () for n in nodes if n not in asking)
    assert all(n.needs == () for n in nodes)


def test_a_run_after_reused_runs_starts_in_the_same_release(tmp_path):
    """Runs whose predecessors were all finished before are settled at once, not left waiting forever."""
    from saie_lib.ray_executor import Dispatch
    from saie_lib.run_graph import RunNode

    finished = []
    for name in ("a", "b", "c"):
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / "metrics.json").write_text("{}")
        finished.append(run_dir)
    nodes = [RunNode("math", "a", 0, run_dir=finished[0]),
             RunNode("math", "b", 0, after=("math/seed0/a",), run_dir=finished[1]),
             RunNode("math", "c", 0, after=("math/seed0/b",), run_dir=finished[2])]
    submitted = []
    dispatch = Dispatch(nodes, submit=submitted.append, logs=lambda node: tmp_path / "log", say=lambda line: None)
    assert dispatch.release(list(nodes)) == []
    assert dispatch.outcome.reused == {n.label for n in nodes} and submitted == []


def test_a_run_comes_after_only_runs_of_the_same_dispatch(tmp_path):
    """One run dispatched alone starts, though in the whole graph it would wait for another."""
    from saie_lib.ray_executor import Dispatch
    from saie_lib.run_graph import RunNode

    node = RunNode("math", "saie", 0, after=("math/seed0/adversarial",), run_dir=tmp_path / "saie")
    submitted = []
    dispatch = Dispatch([node], submit=submitted.append, logs=lambda node: tmp_path / "log", say=lambda line: None)
    assert dispatch.release([node]) == []
    assert submitted == [node]


def test_a_need_outside_the_selected_experiments_is_left_to_the_run_to_check(data_dir, tmp_path):
    nodes = study_graph(load_profile("tiny"), ["multiagent"], data_dir=str(data_dir), results_root=str(tmp_path))
    assert [n.needs for n in nodes] == [()] * len(nodes)


def test_declared_memory_is_the_profiles_stated_ram():
    from saie_lib.study_dispatch import stated_ram_bytes

    assert stated_ram_bytes(load_profile("tiny")) == 2**30  # "under 1 GB RAM"
    assert stated_ram_bytes(load_profile("cpu-quick")) == int(2.5 * 2**30)
    assert stated_ram_bytes(load_profile("gpu-paper")) is None  # states GPU memory only


def test_unknown_executor_is_refused(tmp_path):
    from saie_lib.reproduce import reproduce

    with pytest.raises(ValueError, match="executor 'slurm'"):
        reproduce("tiny", ["math"], results_root=tmp_path, executor="slurm")


def test_make_reproduce_passes_the_executor():
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    printed = subprocess.run(["make", "-n", "reproduce", "PROFILE=tiny", "EXECUTOR=ray"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
    assert "saie_lib.reproduce --profile tiny --executor ray" in printed


def test_record_compare_ignores_only_where_a_remark_came_from(tmp_path):
    row = {"remark": "Are you sure?", "cache_hit": False, "stance_tries": [{"try": 1, "cache_hit": False}]}
    for side, hit in (("a", False), ("b", True)):
        run = tmp_path / side / "run"
        run.mkdir(parents=True)
        tries = [{"try": 1, "cache_hit": hit}]
        (run / "transcripts.jsonl").write_text(json.dumps({**row, "cache_hit": hit, "stance_tries": tries}) + "\n")
        (run / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "eval_seconds": len(side) + hit}))
    assert differences(tmp_path / "a", tmp_path / "b") == []
    (tmp_path / "b" / "run" / "transcripts.jsonl").write_text(json.dumps({**row, "remark": "Sure."}) + "\n")
    assert differences(tmp_path / "a", tmp_path / "b") == ["differs: run/transcripts.jsonl"]


# --- the remark cache shared by processes (no cluster) -------------------------------------------------------


def test_the_first_usable_reply_stored_under_a_key_is_the_one_everybody_uses(tmp_path):
    path = tmp_path / "remarks.sqlite"
    with RemarkCache(path) as first, RemarkCache(path) as second:
        first._db.execute("INSERT INTO remarks (key, text, prompt_tokens, completion_tokens, cost_usd, created_at) "
                          "VALUES ('old', '   ', 1, 1, NULL, 0)")  # left by older code
        first._db.commit()
        kept = first.put_many({"k": Reply("from the first", 3, 4, 0.1), "old": Reply("usable now", 1, 2, None)})
        got = second.put_many({"k": Reply("from the second", 5, 6, 0.2)})
        assert kept["k"].text == "from the first" and not kept["k"].cached
        assert kept["old"].text == "usable now"  # an unusable entry is replaced
        assert got["k"].text == "from the first" and got["k"].cached and got["k"].prompt_tokens == 3
        assert {k: r.text for k, r in second.get_many(["k", "old"]).items()} == {"k": "from the first",
                                                                               "old": "usable now"}


# --- on a local Ray cluster ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray", reason="the ray extra is not installed (make install includes it)")
    from saie_lib.ray_cluster import ray_cluster

    with ray_cluster(workers=2):
        yield


def fresh_cache(folder: Path, models: Path) -> str:
    return str(_cache_dir_sharing_models(folder, models))


@pytest.fixture(scope="module")
def serial(data_dir, tmp_path_factory, clean_session_environment):
    """The tiny study run the way its notebooks run it: every experiment's runs in this process, in order."""
    import torch

    from saie_lib.experiments import run_experiment

    root, threads = tmp_path_factory.mktemp("serial"), torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray worker with one CPU; two threads beside other busy processes crawl
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAIE_CACHE_DIR", fresh_cache(root / "cache", clean_session_environment))
        profile = load_profile("tiny")
        try:
            for name in EXPERIMENTS:
                run_experiment(profile, name, progress=False, data_dir=str(data_dir),
                               results_root=str(root / "results"))
        finally:
            torch.set_num_threads(threads)
    return root / "results"


@pytest.fixture(scope="module")
def reproduced_on_ray(cluster, data_dir, tmp_path_factory, clean_session_environment):
    """`make reproduce PROFILE=tiny EXECUTOR=ray`: the runs on two Ray workers, then every notebook."""
    from saie_lib.reproduce import main

    root = tmp_path_factory.mktemp("on-ray")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAIE_CACHE_DIR", fresh_cache(root / "cache", clean_session_environment))
        patch.setenv("SAIE_PROGRESS", "text")
        code = main(["--profile", "tiny", "--executor", "ray", "--data-dir", str(data_dir),
                     "--results-root", str(root / "results")])
    return root / "results", code


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.notebooks
def test_tiny_study_on_two_ray_workers_equals_the_serial_run(reproduced_on_ray, serial):
    root, code = reproduced_on_ray
    assert code == 0
    assert differences(serial, root) == []
    metrics = [p for p in record_files(root) if p.name == "metrics.json"]
    assert len(metrics) == len(study_graph(load_profile("tiny"), results_root=str(root)))


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.notebooks
def test_after_ray_the_notebooks_only_read_and_the_page_equals_the_serial_one(reproduced_on_ray, serial):
    from saie_lib.reproduce import build_summary

    root, _ = reproduced_on_ray
    log = [json.loads(line) for line in (root / "runs" / "tiny" / "reproduce_log.jsonl").read_text().splitlines()]
    assert {row["experiment"]: row["status"] for row in log if row.get("executor") == "ray"} == {
        name: "ran on ray" for name in EXPERIMENTS}
    notebooks = [row for row in log if "executor" not in row]
    assert [row["status"] for row in notebooks] == ["re-executed (all runs finished, reused)"] * len(EXPERIMENTS)
    for name, experiment in EXPERIMENTS.items():
        assert "Traceback" not in (root / "runs" / "tiny" / name / experiment.notebook).read_text()
    build_summary(serial, progress=False)  # the serial run's page, from its run dirs and markers
    for relative in ("README.md", *(f"tables/{p.name}" for p in (serial / "tables").iterdir())):
        assert results_text(root, relative) == results_text(serial, relative), relative


def results_text(root: Path, relative: str) -> list[str]:
    """A page's or table's lines, its results root written as `<root>` (a root outside the checkout is named by
    its absolute path), less the measured peak memory: a Ray worker holds one run, the serial process them all,
    so that line measures the executor, not the study (record_compare leaves `resources` out for that reason)."""
    text = (root / relative).read_text().replace(str(root), "<root>")
    return [line for line in text.splitlines() if not line.startswith("Measured peak memory:")]


def _kill_after_a_discussion_checkpoint(run_dir: Path, log: Path, cache: Path, seen: dict) -> None:
    """SIGKILL the worker running `run_dir` once it has checkpointed its first discussion batch (batch 1 is the
    warm-up), noting how many remarks the cache held then."""
    deadline = time.monotonic() + 1800  # Ray's start and the model's load take minutes on a loaded 2-core machine
    while time.monotonic() < deadline and not (run_dir / "metrics.json").is_file() and not seen.get("returned"):
        header = log.read_text().splitlines()[0] if log.is_file() and log.stat().st_size else ""
        if header and (run_dir / "checkpoints" / "batch-000002" / "cursor.json").is_file():
            os.kill(int(header.split(" pid ")[1].split()[0]), signal.SIGKILL)
            with RemarkCache(cache) as opened:
                seen["entries"] = opened.stats()["entries"]
            return
        time.sleep(0.02)


def runs_up_to(nodes, label: str) -> list:
    """The run `label` and the runs it comes after, first to last: the partner remarks cached before it are
    those the serial run had cached (a remark asked in another batch may be worded otherwise by a tiny model)."""
    by_label = {n.label: n for n in nodes}
    chain = [by_label[label]]
    while chain[0].after:
        chain.insert(0, by_label[chain[0].after[0]])
    return chain


@pytest.mark.ray
@pytest.mark.slow
def test_a_worker_killed_mid_training_is_retried_and_gives_the_same_records(cluster, serial, data_dir, tmp_path):
    from saie_lib.paths import remark_cache_file
    from saie_lib.ray_executor import attempts, run_graph
    from saie_lib.run_graph import log_name

    profile = load_profile("tiny")
    locations = {"data_dir": str(data_dir), "results_root": str(tmp_path / "results")}
    chain = runs_up_to(study_graph(profile, ["math"], **locations), "math/seed0/saie")
    node = chain[-1]
    log, seen = tmp_path / "logs" / log_name(node), {}
    killer = threading.Thread(target=_kill_after_a_discussion_checkpoint,
                              args=(node.run_dir, log, remark_cache_file(), seen))
    killer.start()
    outcome = run_graph(chain, profile.path, logs_dir=tmp_path / "logs", progress=False, **locations)
    seen["returned"] = True  # the killer stops waiting whatever happened
    killer.join()
    assert outcome.finished == {n.label: n.run_dir for n in chain}, outcome
    assert "entries" in seen, "the run finished before it could be killed"
    assert not outcome.failed
    assert attempts(log) == 2 and "resuming from checkpoint batch-" in log.read_text()
    assert (node.run_dir / "env-2.json").is_file()  # the second session recorded itself
    for run in chain:
        assert differences(serial / run.run_dir.relative_to(tmp_path / "results"), run.run_dir) == [], run.label
    serial_run = serial / node.run_dir.relative_to(tmp_path / "results")
    resumed = json.loads((node.run_dir / "metrics.json").read_text())["partner"]
    uninterrupted = json.loads((serial_run / "metrics.json").read_text())["partner"]
    with RemarkCache(remark_cache_file()) as opened:
        stored_after_kill = opened.stats()["entries"] - seen["entries"]
    assert seen["entries"] > 0  # the killed attempt had stored the remarks of its finished batches
    # the resumed session asked only for the batches after its checkpoint (a full run asks for all of them),
    # and what it stored it had paid for: nothing the killed attempt stored was asked for again
    requests = lambda partner: partner["calls_this_session"] + partner["cache_hits_this_session"]
    assert 0 < requests(resumed) < requests(uninterrupted)
    assert stored_after_kill <= resumed["calls_this_session"]


def hammer(path: str, worker: str, ready: str, go: str, rounds: int) -> dict:
    """One worker: CachedPartner over the shared cache (the file itself, or as served to a Ray dispatch's runs),
    asking overlapping prompts as fast as it can."""
    from saie_lib.remark_cache_server import open_remark_cache

    class Answering:
        model_id = "fake:hammer"
        asked = 0

        def chat(self, conversations, sampling):
            self.asked += len(conversations)
            return [Reply(f"{worker} on {c[-1]['content']}", 3, 4, 0.001) for c in conversations]

    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.01)
    used = {}
    with open_remark_cache(path) as cache:
        partner = CachedPartner(Answering(), cache)
        for step in range(rounds):
            conversations = [[{"role": "user", "content": f"prompt {(step * 7 + i) % 60}"}] for i in range(8)]
            for messages, reply in zip(conversations, partner.chat(conversations, SAMPLING)):
                used.setdefault(messages[-1]["content"], set()).add(reply.text)
        return {"used": {k: sorted(v) for k, v in used.items()}, "paid": partner.partner.asked}


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("served", [False, True], ids=["sqlite-file", "served"])
def test_two_workers_hammering_the_remark_cache_leave_every_entry_valid(cluster, tmp_path, served):
    import ray
    from ray import cloudpickle

    from saie_lib.remark_cache_server import SERVED_ENV, start_server

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    path = tmp_path / "remarks.sqlite"
    server = start_server() if served else None  # held: an actor nobody holds is ended
    task = ray.remote(hammer).options(num_cpus=1, runtime_env={"env_vars": {SERVED_ENV: "1"} if served else {}})
    refs = [task.remote(str(path), w, str(tmp_path / f"ready-{w}"), str(tmp_path / "go"), 150) for w in ("A", "B")]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{w}").exists() for w in "AB") and time.monotonic() < deadline:
        time.sleep(0.05)
    (tmp_path / "go").touch()  # both workers start together
    results = dict(zip("AB", ray.get(refs)))
    del server
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = {key: text for key, text in db.execute("SELECT key, text FROM remarks")}
    prompts = {f"prompt {i}" for i in range(60)}
    keys = {remark_key("fake:hammer", [{"role": "user", "content": p}], SAMPLING): p for p in prompts}
    assert set(stored) == set(keys)  # one entry per distinct prompt
    assert all(text in (f"A on {keys[k]}", f"B on {keys[k]}") for k, text in stored.items())  # none torn or mixed
    by_prompt = {keys[k]: text for k, text in stored.items()}
    for result in results.values():  # every reply a worker used is the stored one, so both used the same
        assert {p: texts for p, texts in result["used"].items()} == {p: [by_prompt[p]] for p in result["used"]}
    assert len(prompts) <= results["A"]["paid"] + results["B"]["paid"] <= 2 * len(prompts)


@pytest.mark.ray
@pytest.mark.slow
def test_a_run_that_cannot_succeed_fails_once_and_the_rest_goes_on(cluster, data_dir, tmp_path):
    from saie_lib.ray_executor import attempts
    from saie_lib.reproduce import log
    from saie_lib.study_dispatch import dispatch_study, logs_dir, missing_report

    partial = tmp_path / "data"  # no gsm8k: the math runs cannot load their data
    partial.mkdir()
    for task in ("commonsense_qa", "mmlu"):
        (partial / task).symlink_to(Path(data_dir) / task, target_is_directory=True)
    text = (load_profile("tiny").path.read_text().replace("seeds: 2 ", "seeds: 1 ")
            + "conditions: [base, none, saie]\n")
    (tmp_path / "tiny-three.yaml").write_text(text)
    profile = load_profile(tmp_path / "tiny-three.yaml")
    root = tmp_path / "results"
    dispatch = dispatch_study(profile, ["math", "commonsense", "multiagent", "robustness"], data_dir=str(partial),
                              results_root=root, log=log, progress=False)
    outcome = dispatch.outcome
    assert set(outcome.failed) == {"math/seed0/base", "math/seed0/none", "math/seed0/saie"}
    assert all("DataUnavailableError" in why and "gsm8k" in why for why in outcome.failed.values())
    assert all(attempts(logs_dir(profile, root) / f"math-seed0-{c}.log") == 1 for c in ("base", "none", "saie"))
    assert set(outcome.not_run) == {f"robustness/seed0/{c}" for c in profile.conditions}
    assert {label.split("/")[0] for label in outcome.finished} == {"commonsense", "multiagent"}
    assert dispatch.incomplete.keys() == {"math", "robustness"}
    markers = {p.parent.name for p in (root / "runs" / profile.name).glob("*/experiment.json")}
    assert markers == {"commonsense", "multiagent"}
    log_file = root / "runs" / profile.name / "reproduce_log.jsonl"
    rows = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert {row["experiment"]: row["status"] for row in rows} == {
        "math": "incomplete on ray", "commonsense": "ran on ray", "multiagent": "ran on ray",
        "robustness": "incomplete on ray"}
    report = missing_report(dispatch)
    assert len(report) == 6
    assert any(line.startswith("robustness/seed0/saie: not run (needs math/seed0") for line in report)
    # with the data back, a second dispatch runs only what is missing
    again = dispatch_study(profile, ["math", "commonsense", "multiagent", "robustness"], data_dir=str(data_dir),
                           results_root=root, log=log, progress=False)
    assert not again.outcome.missing and again.ran == {"math", "robustness"}
    assert again.outcome.reused == set(outcome.finished)


@pytest.mark.ray
@pytest.mark.slow
def test_a_worker_that_cannot_write_what_runs_share_stops_the_dispatch_first(cluster, tmp_path, monkeypatch):
    from saie_lib.ray_cluster import SharedFilesystemError, check_shared_filesystem

    check_shared_filesystem(tmp_path / "results")  # every worker sees it
    monkeypatch.setenv("SAIE_REMARK_CACHE", "/proc/saie-not-writable/remarks.sqlite")
    with pytest.raises(SharedFilesystemError, match="cannot write /proc/saie-not-writable"):
        check_shared_filesystem(tmp_path / "results")
