"""Compact notebook output (saie_lib.notebook_view): a config as its non-default fields, tables with the compared
columns only."""

from conftest import REPO

from saie_lib.config import EvalConfig
from saie_lib.notebook_view import compact_findings, compact_table, config_summary


def test_config_summary_names_study_task_model_and_only_changed_fields():
    text = config_summary(EvalConfig(study="s", task="gsm8k", limit=7, results_root="/somewhere"))
    assert "`study` s" in text and "`task` gsm8k" in text and "`model` " in text and "`limit` 7" in text
    assert "results_root" not in text and "`seed`" not in text and "\n" not in text


def test_compact_table_keeps_the_compared_columns_and_names_a_single_task_above(tmp_path):
    table = compact_table(REPO / "results" / "tables" / "cpu-small_math.csv")
    header = table.splitlines()[2]
    assert table.startswith("*task: gsm8k*")
    assert header.startswith("| condition | n | accuracy | 95% CI | invalid_rate |") and "run" not in header
    assert len(header.split("|")) - 2 <= 9


def test_compact_findings_leaves_the_claim_text_to_the_statements():
    checked = [{"task": "gsm8k", "setting": "individual", "measure": "accuracy", "claim": "long text", "a": "saie",
                "b": "none", "n": 30, "accuracy_a": 0.1, "accuracy_b": 0.2, "a_only": 1, "b_only": 3,
                "p_value": 0.6, "p_holm": 1.0, "verdict": "not resolved at this n"}]
    assert "long text" not in compact_findings(checked) and "| saie | none |" in compact_findings(checked)
