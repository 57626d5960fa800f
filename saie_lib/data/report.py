"""What a load_task call read, for a run's metadata: counts, repeated rows and rationale coverage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from saie_lib.data.checks import DuplicateRow, count_repeats
from saie_lib.tasks import Example


@dataclass(frozen=True)
class LoadReport:
    """One load_task call. duplicate_rows lists rows that repeat an earlier row's question, choices and answer
    under another id (real MMLU has some: dev 1, val 2, test 105); they are kept, and counted here."""

    task: str
    split: str
    source: str  # the data folder, or "Hugging Face Hub"
    n_loaded: int  # rows of the split(s), before any subset
    n_returned: int
    duplicate_rows: tuple[DuplicateRow, ...] = ()
    duplicate_rows_returned: int = 0  # returned examples repeating an earlier returned one
    without_rationale: int = 0  # returned examples with rationale None (every MMLU example)
    options: dict = field(default_factory=dict)

    @property
    def n_duplicate_rows(self) -> int:
        return len(self.duplicate_rows)

    def as_dict(self) -> dict:
        """A JSON-ready summary for run metadata."""
        return {
            "task": self.task,
            "split": self.split,
            "source": self.source,
            "options": dict(self.options),
            "n_loaded": self.n_loaded,
            "n_returned": self.n_returned,
            "n_duplicate_rows": self.n_duplicate_rows,
            "duplicate_rows_returned": self.duplicate_rows_returned,
            "without_rationale": self.without_rationale,
            "duplicate_rows": [row.as_dict() for row in self.duplicate_rows],
        }


class LoadedExamples(list):
    """The list of Examples load_task returns, with its LoadReport as `.report`."""

    def __init__(self, examples: Iterable[Example], report: LoadReport):
        super().__init__(examples)
        self.report = report


def make_report(
    *, task: str, split: str, source: str, n_loaded: int, duplicates: tuple, returned: list, options: dict
) -> LoadReport:
    return LoadReport(
        task=task,
        split=split,
        source=source,
        n_loaded=n_loaded,
        n_returned=len(returned),
        duplicate_rows=duplicates,
        duplicate_rows_returned=count_repeats(returned),
        without_rationale=sum(example.rationale is None for example in returned),
        options=dict(options),
    )
