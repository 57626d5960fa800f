"""Portable run records: nothing committed under results/ names the machine that wrote it.

Absolute paths are mapped to portable strings, first match wins:

    <results root>/rest  ->  rest                    (relative to the results root)
    <data dir>/rest      ->  $SAIE_DATA_DIR/rest     (the data dir itself -> $SAIE_DATA_DIR)
    <cache dir>/rest     ->  $SAIE_CACHE_DIR/rest
    <repo root>/rest     ->  rest                    (relative to the repo)
    <home>/rest          ->  ~/rest
    anything else        ->  unchanged

A root whose paths become relative is, by itself, mapped by the rules after it, else "."; so the default
results root <repo>/results maps to "results", and the repo root itself to "." (or ~/... under home).

`portable_path` maps one path, `portable` every absolute path in a JSON-like object (what the record
writers call before writing), `rewrite_text` every root-prefixed path inside free text (notebook cells and
outputs). Checking and rewriting whole trees of records: `saie_lib.record_audit`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePath
from typing import Any

from . import paths

DATA_LABEL = "$SAIE_DATA_DIR"
CACHE_LABEL = "$SAIE_CACHE_DIR"
HOME_LABEL = "~"
PROTECTED_KEYS = ("identity",)  # top-level keys of a record that are never rewritten (they name the run)

Roots = list[tuple[str, str]]  # (absolute root, label), tried in order; label "" = relative to the root


def _normalized_root(root: str | os.PathLike | None) -> str | None:
    if root is None or os.fspath(root) == "":
        return None
    text = os.path.normpath(os.path.abspath(os.path.expanduser(os.fspath(root))))
    return None if text in (os.sep, "//") else text


def _home() -> Path | None:
    try:
        return Path.home()
    except (RuntimeError, KeyError):  # no HOME and no passwd entry
        return None


def root_labels(*, results_root: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None,
                repo_root: str | os.PathLike | None = None) -> Roots:
    """The roots the library maps, in the order they are tried; a root left out is read from saie_lib.paths
    (results_dir, cache_dir, repo_root) or, for the data dir, env SAIE_DATA_DIR (unset: no data root)."""
    candidates = [
        (paths.results_dir() if results_root is None else results_root, ""),
        ((os.environ.get("SAIE_DATA_DIR") or None) if data_dir is None else data_dir, DATA_LABEL),
        (paths.cache_dir() if cache_dir is None else cache_dir, CACHE_LABEL),
        (paths.repo_root() if repo_root is None else repo_root, ""),
        (_home(), HOME_LABEL),
    ]
    pairs = [(_normalized_root(root), label) for root, label in candidates]
    return [(root, label) for root, label in pairs if root]


def _root_pattern(roots: Roots) -> re.Pattern[str]:
    """A root where a path starts (not inside a longer name), then the separator if a path follows it."""
    alternatives = "|".join(f"(?P<r{i}>{re.escape(root)})" for i, (root, _) in enumerate(roots))
    return re.compile(rf"(?<![\w.~$/-])(?:{alternatives})(?![\w.-])(?P<sep>/(?=[^\s/'\"]))?")


def _bare_root(index: int, roots: Roots) -> str:
    """A root whose paths become relative (empty label) is, by itself, mapped by the roots after it (the
    results root inside the repo -> "results"); when none holds it, "."."""
    root = roots[index][0]
    for other, label in roots[index + 1:]:
        if root == other and label:
            return label
        if root.startswith(other + "/"):
            rest = root[len(other) + 1:]
            return f"{label}/{rest}" if label else rest
    return "."


def _replacement(roots: Roots):
    def replace(match: re.Match[str]) -> str:
        index = next(i for i in range(len(roots)) if match.group(f"r{i}") is not None)
        label = roots[index][1]
        if match.group("sep"):
            return f"{label}/" if label else ""
        return label or _bare_root(index, roots)

    return replace


def rewrite_text(text: str, roots: Roots) -> str:
    """Every root-prefixed absolute path inside `text` mapped as `portable_path` maps a whole path."""
    if not roots or "/" not in text:
        return text
    return _root_pattern(roots).sub(_replacement(roots), text)


def _map_path(text: str, roots: Roots) -> str:
    if not roots or not os.path.isabs(text) or "\n" in text:
        return text
    normalized = os.path.normpath(text)
    match = _root_pattern(roots).match(normalized)
    if match is None:
        return text
    return _replacement(roots)(match) + normalized[match.end():]


def portable_path(path: str | os.PathLike, *, results_root: str | os.PathLike | None = None,
                  data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                  repo_root: str | os.PathLike | None = None) -> str:
    """`path` as a string that means the same on any machine (see the module doc); a relative path, or an
    absolute one outside every root, comes back unchanged."""
    roots = root_labels(results_root=results_root, data_dir=data_dir, cache_dir=cache_dir, repo_root=repo_root)
    return _map_path(os.fspath(path), roots)


def _portable_value(obj: Any, roots: Roots) -> Any:
    if isinstance(obj, PurePath):
        return _map_path(str(obj), roots)
    if isinstance(obj, str):
        return _map_path(obj, roots)
    if isinstance(obj, dict):
        return {key: _portable_value(value, roots) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_portable_value(value, roots) for value in obj]
    if isinstance(obj, tuple):
        return tuple(_portable_value(value, roots) for value in obj)
    return obj


def portable(obj: Any, **roots: str | os.PathLike | None) -> Any:
    """A copy of `obj` with every string that is an absolute path, and every Path, passed through
    `portable_path` (Paths come back as str); dict keys, other strings and other values are untouched.
    Keyword arguments: the roots of `portable_path`."""
    return _portable_value(obj, root_labels(**roots))
