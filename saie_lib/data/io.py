"""Shared file readers and error types: every bad row raises, naming the file and the line.

Files are read as bytes and decoded here, so that bytes that are not UTF-8 raise a DataFormatError naming the
line, and a leading UTF-8 byte-order mark is dropped instead of ending up in the first question. A file above
MAX_FILE_BYTES, or a line (a CSV record) above MAX_LINE_CHARS, is refused before it reaches a model.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "SAIE_DATA_DIR"
MAX_FILE_BYTES = 256 * 1024 * 1024  # the largest real data file is 4 MB
MAX_LINE_CHARS = 65_536  # the longest real row (a line, or a CSV record) has under 5,000 characters

DATA_LAYOUT_HELP = (
    f"Set {DATA_DIR_ENV} (or pass data_dir=...) to a folder laid out like the original distributions: "
    "gsm8k/{train,test}.jsonl; "
    "commonsense_qa/{train,dev}_rand_split.jsonl with "
    "commonsense_qa/rationales/cos_e/v1.11/cose_{train,dev}_v1.11.jsonl and "
    "commonsense_qa/rationales/ecqa/cqa_data_{val,test}.csv; "
    "mmlu/{dev,val,test}/<subject>_<split>.csv. Or allow Hugging Face Hub access."
)
_MISSING_ERRORS = (FileNotFoundError, NotADirectoryError)


class DataFormatError(ValueError):
    """A data row that does not match its documented format; the message names the file and line."""


class DataUnavailableError(RuntimeError):
    """The data cannot be found or read: a missing or unreadable folder or file, or no Hub access."""


@dataclass(frozen=True)
class Location:
    """Where a record came from, so that an error can point at it."""

    source: str
    line: int
    unit: str = "line"

    def __str__(self) -> str:
        return f"{self.source}, {self.unit} {self.line}"

    def error(self, problem: str) -> DataFormatError:
        return DataFormatError(f"{self}: {problem}")


def _unreadable(path: Path, what: str, exc: OSError) -> DataUnavailableError:
    reason = exc.strerror or type(exc).__name__
    return DataUnavailableError(f"cannot read {what} {path} ({reason}); check that it exists and is readable")


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
    if os.path.isfile(path):
        raise DataUnavailableError(f"data folder {path} (from {origin}) is a file, not a folder. {DATA_LAYOUT_HELP}")
    try:
        os.listdir(path)
    except _MISSING_ERRORS:
        raise DataUnavailableError(f"data folder {path} (from {origin}) does not exist. {DATA_LAYOUT_HELP}") from None
    except OSError as exc:
        raise _unreadable(path, f"data folder (from {origin})", exc) from None
    return path


def file_exists(path: Path) -> bool:
    """Whether `path` is there at all; a folder on the way that cannot be read raises DataUnavailableError."""
    try:
        path.stat()
    except _MISSING_ERRORS:
        return False
    except OSError as exc:
        raise _unreadable(path, "data file", exc) from None
    return True


def require_file(path: Path) -> Path:
    if not file_exists(path):
        raise DataUnavailableError(f"missing data file {path}. {DATA_LAYOUT_HELP}")
    if not stat.S_ISREG(path.stat().st_mode):
        raise DataUnavailableError(f"data file {path} is not a regular file. {DATA_LAYOUT_HELP}")
    return path


def list_folder(folder: Path) -> list[Path]:
    """The entries of a data folder, sorted; a missing folder gives [], an unreadable one raises."""
    try:
        return sorted(folder.iterdir())
    except _MISSING_ERRORS:
        return []
    except OSError as exc:
        raise _unreadable(folder, "data folder", exc) from None


def read_text(path: Path) -> str:
    """The file decoded as UTF-8 without a leading byte-order mark; bad bytes raise, naming the line."""
    try:
        size = require_file(path).stat().st_size
        if size > MAX_FILE_BYTES:
            raise DataFormatError(f"{path}: the file has {size:,} bytes; a data file may have at most "
                                  f"{MAX_FILE_BYTES:,}")
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise _unreadable(path, "data file", exc) from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = data[exc.start : exc.end].hex(" ")
        raise Location(str(path), line).error(f"not valid UTF-8 (bytes {bad} at byte {column} of the line)") from None


def no_rows_error(path: Path, problem: str = "the file holds no rows") -> DataFormatError:
    return Location(str(path), 1).error(problem)


def check_row_length(chars: int, where: Location) -> None:
    if chars > MAX_LINE_CHARS:
        raise where.error(f"the row has {chars:,} characters; a row may have at most {MAX_LINE_CHARS:,}")


def require(record: dict, key: str, expected_type: type, where: Location):
    """record[key], checked to be present and of the expected type."""
    if key not in record:
        raise where.error(f"missing key {key!r}")
    value = record[key]
    if not isinstance(value, expected_type):
        raise where.error(f"{key!r} should be {expected_type.__name__}, got {type(value).__name__}")
    return value


def read_jsonl(path: Path) -> Iterator[tuple[Location, dict]]:
    """Each line's JSON object with its location; a blank line, bad JSON, a non-object or no lines raise."""
    lines = io.StringIO(read_text(path), newline=None).readlines()
    if not lines:
        raise no_rows_error(path)
    for number, line in enumerate(lines, start=1):
        where = Location(str(path), number)
        check_row_length(len(line), where)
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise where.error(f"invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise where.error(f"expected a JSON object, got {type(record).__name__}")
        yield where, record


def read_csv(path: Path, n_columns: int) -> Iterator[tuple[Location, list[str]]]:
    """Each CSV record with the line it starts on; fields may span lines; a wrong column count or no rows raise."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""), strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            if start == 1:
                raise no_rows_error(path) from None
            return
        except csv.Error as exc:
            raise Location(str(path), reader.line_num).error(f"malformed CSV ({exc})") from None
        where = Location(str(path), start)
        check_row_length(sum(map(len, row)), where)
        if len(row) != n_columns:
            raise where.error(f"expected {n_columns} columns, got {len(row)}")
        yield where, row
        start = reader.line_num + 1
