"""Shared file readers and error types: every bad row raises, naming the file and the line."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "SAIE_DATA_DIR"

DATA_LAYOUT_HELP = (
    f"Set {DATA_DIR_ENV} (or pass data_dir=...) to a folder laid out like the original distributions: "
    "gsm8k/{train,test}.jsonl; "
    "commonsense_qa/{train,dev}_rand_split.jsonl with "
    "commonsense_qa/rationales/cos_e/v1.11/cose_{train,dev}_v1.11.jsonl and "
    "commonsense_qa/rationales/ecqa/cqa_data_{val,test}.csv; "
    "mmlu/{dev,val,test}/<subject>_<split>.csv. Or allow Hugging Face Hub access."
)


class DataFormatError(ValueError):
    """A data row that does not match its documented format; the message names the file and line."""


class DataUnavailableError(RuntimeError):
    """The data cannot be found: a missing folder or file, or no Hub access."""


@dataclass(frozen=True)
class Location:
    """Where a record came from, so that an error can point at it."""

    source: str
    line: int
    unit: str = "line"

    def error(self, problem: str) -> DataFormatError:
        return DataFormatError(f"{self.source}, {self.unit} {self.line}: {problem}")


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """The data folder from the argument, else from $SAIE_DATA_DIR; None means: use the Hub."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
        origin = f"${DATA_DIR_ENV}"
    else:
        origin = "data_dir"
    if data_dir is None:
        return None
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataUnavailableError(f"data folder {path} (from {origin}) does not exist. {DATA_LAYOUT_HELP}")
    return path


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise DataUnavailableError(f"missing data file {path}. {DATA_LAYOUT_HELP}")
    return path


def require(record: dict, key: str, expected_type: type, where: Location):
    """record[key], checked to be present and of the expected type."""
    if key not in record:
        raise where.error(f"missing key {key!r}")
    value = record[key]
    if not isinstance(value, expected_type):
        raise where.error(f"{key!r} should be {expected_type.__name__}, got {type(value).__name__}")
    return value


def read_jsonl(path: Path) -> Iterator[tuple[Location, dict]]:
    """Each line's JSON object with its location; a blank line, bad JSON or a non-object raises."""
    with open(require_file(path), encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            where = Location(str(path), number)
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise where.error(f"invalid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise where.error(f"expected a JSON object, got {type(record).__name__}")
            yield where, record


def read_csv(path: Path, n_columns: int) -> Iterator[tuple[Location, list[str]]]:
    """Each CSV record with the line it starts on; fields may span lines, a wrong column count raises."""
    with open(require_file(path), encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, strict=True)
        start = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise Location(str(path), reader.line_num).error(f"malformed CSV ({exc})") from None
            where = Location(str(path), start)
            if len(row) != n_columns:
                raise where.error(f"expected {n_columns} columns, got {len(row)}")
            yield where, row
            start = reader.line_num + 1
