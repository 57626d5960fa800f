"""Audit and repair the committed run records: list what still names a machine or looks like a secret, and the
run dirs whose logs hold a row twice or out of order (file and row, `run_consistency`), and rewrite old
absolute roots (and frozen progress widgets) out of a tree of records.

    python -m saie_lib.record_audit --check results
    python -m saie_lib.record_audit --rewrite results --old-root /clone/results= \\
        --old-root '/data=$SAIE_DATA_DIR' --old-root /clone= [--strip-widgets]

In --old-root OLD=NEW an empty NEW means "relative to OLD", as for the results and repo roots of
`saie_lib.portable` (OLD itself then falls through to the later --old-root rules, else "."), same code as the
library. The "identity" section of a run's config.json is never rewritten: the run dir name is its hash.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from .portable import PROTECTED_KEYS, Roots, _home, _normalized_root, rewrite_text
from .run_consistency import tree_findings

MAX_SCAN_BYTES = 5 * 1024 * 1024
BINARY_SUFFIXES = frozenset({
    ".png", ".jpg", ".jpeg", ".gif", ".svg", ".pdf", ".ico", ".webp", ".safetensors", ".pt", ".pth", ".bin",
    ".ckpt", ".gguf", ".onnx", ".npy", ".npz", ".pkl", ".pickle", ".parquet", ".arrow", ".zip", ".gz", ".tar",
    ".xz", ".bz2", ".zst", ".7z", ".so", ".pyc", ".woff", ".woff2", ".ttf", ".sqlite", ".db",
})
# Never committed (see .gitignore): model weights, checkpoints, partial samples, editor state.
EXCLUDED_DIRS = frozenset({"adapter", "checkpoints", "merged-16bit", ".ipynb_checkpoints", ".git", "__pycache__",
                           "ray-logs"})
EXCLUDED_SUFFIXES = (".partial.jsonl", "writer.lock", "writer.lock.break")  # lock files name the host
_PATH_START = r"(?:(?<![\w.~$-])|(?<=\\[nrt]))"  # a path starts here, also right after a JSON \n escape
MACHINE_PATH = re.compile(_PATH_START + r"/(?:tmp|work|root|home|Users|mnt|content)/[^\s\"',;)\]}>]*"
                          r"|\b[A-Za-z]:(?:\\\\|\\|/)Users\b[^\s\"',;)\]}>]*")
SECRET = re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{8,}|(?<![A-Za-z0-9])hf_[A-Za-z0-9]{20,}"
                    r"|\bBearer\s+[A-Za-z0-9._~+/=-]{8,}|\bAKIA[0-9A-Z]{16}\b")


def _user_patterns() -> list[re.Pattern[str]]:
    """The login name in path form, and the home directory (wherever it is)."""
    found = []
    try:
        user = getpass.getuser()
    except Exception:  # no login name (some containers)
        user = None
    if user:
        found.append(re.compile(_PATH_START + rf"/(?:home|Users)/{re.escape(user)}(?![\w.-])[^\s\"',;)\]}}>]*"))
    home = _normalized_root(_home())
    if home:
        found.append(re.compile(_PATH_START + re.escape(home) + r"(?![\w.-])[^\s\"',;)\]}>]*"))
    return found


def _scanned_files(root: Path):
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if (not path.is_file() or EXCLUDED_DIRS.intersection(relative.parts[:-1])
                or path.name.endswith(EXCLUDED_SUFFIXES) or path.suffix.lower() in BINARY_SUFFIXES
                or path.stat().st_size > MAX_SCAN_BYTES):
            continue
        yield relative, path


def _read_text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _line_findings(line: str, patterns: Sequence[re.Pattern[str]]) -> list[str]:
    spans: dict[int, str] = {}
    for pattern in patterns:
        for match in pattern.finditer(line):
            if len(match.group()) <= len(spans.get(match.start(), "")):
                continue
            spans[match.start()] = match.group()
    return [spans[start] for start in sorted(spans)]


def find_unportable(root: str | os.PathLike) -> list[tuple[str, int, str]]:
    """(file relative to root, line number, matched text) for every absolute machine path, login name in
    path form or secret-like token in the text files under `root` (binary files and files over 5 MB are
    skipped, as are the git-ignored adapter/, checkpoints/, merged-16bit/ and *.partial.jsonl)."""
    root = Path(root)
    patterns = [MACHINE_PATH, SECRET, *_user_patterns()]
    findings = []
    for relative, path in _scanned_files(root):
        text = _read_text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            findings.extend((relative.as_posix(), number, hit) for hit in _line_findings(line, patterns))
    return findings


# --- rewriting committed files ------------------------------------------------------------------------

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_JSON_STYLES = [(indent, separators, ascii_, newline)
                for indent, separators in ((2, None), (1, None), (4, None), (None, None), (None, (",", ":")))
                for ascii_ in (False, True) for newline in ("\n", "")]


def json_style(raw: str, obj: Any) -> dict[str, Any] | None:
    """The json.dumps arguments (plus the trailing newline) that reproduce `raw` byte for byte, else None.
    Key order is the file's own (sort_keys=False), so sorted files stay sorted and notebooks keep theirs."""
    for indent, separators, ascii_, newline in _JSON_STYLES:
        style = {"indent": indent, "separators": separators, "ensure_ascii": ascii_}
        if json.dumps(obj, **style) + newline == raw:
            return {**style, "newline": newline}
    return None


def _dump(obj: Any, style: dict[str, Any]) -> str:
    options = {k: v for k, v in style.items() if k != "newline"}
    return json.dumps(obj, **options) + style["newline"]


def _rewrite_strings(obj: Any, roots: Roots, protect: bool = False) -> Any:
    if isinstance(obj, str):
        return rewrite_text(obj, roots)
    if isinstance(obj, list):
        return [_rewrite_strings(value, roots) for value in obj]
    if isinstance(obj, dict):
        return {key: value if protect and key in PROTECTED_KEYS else _rewrite_strings(value, roots)
                for key, value in obj.items()}
    return obj


def strip_widgets(notebook: dict[str, Any]) -> dict[str, Any]:
    """The notebook without frozen progress widgets: a widget output keeps its text/plain rendering (or is
    dropped when it has none) and the notebook-level widget state goes."""
    for cell in notebook.get("cells", []):
        if "outputs" not in cell:
            continue
        kept = []
        for output in cell["outputs"]:
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                if "text/plain" not in data:
                    continue
                output = {**output, "data": {k: v for k, v in data.items() if k != WIDGET_VIEW}}
            kept.append(output)
        cell["outputs"] = kept
    notebook.get("metadata", {}).pop("widgets", None)
    return notebook


def _rewritten_json(raw: str, roots: Roots, widgets: bool) -> str:
    obj = json.loads(raw)
    style = json_style(raw, obj)
    if style is None:
        raise ValueError("formatting not reproducible by json.dumps; rewrite it by hand")
    obj = _rewrite_strings(obj, roots, protect=True)
    if widgets and isinstance(obj, dict) and "cells" in obj:
        obj = strip_widgets(obj)
    return _dump(obj, style)


def _rewritten_jsonl(raw: str, roots: Roots) -> str:
    lines = []
    for number, line in enumerate(raw.splitlines(keepends=True), start=1):
        body = line.rstrip("\n")
        if not body.strip():
            lines.append(line)
            continue
        obj = json.loads(body)
        style = json_style(body, obj)
        if style is None:
            raise ValueError(f"line {number}: formatting not reproducible by json.dumps")
        lines.append(_dump(_rewrite_strings(obj, roots), style) + line[len(body):])
    return "".join(lines)


def rewrite_file(path: Path, roots: Roots, *, widgets: bool = False) -> bool:
    """Rewrite one text file in place (JSON and notebooks re-dumped in their own formatting, JSONL line by
    line, other text by substitution); True when it changed."""
    raw = _read_text(path)
    if raw is None:
        return False
    if path.suffix in (".json", ".ipynb"):
        new = _rewritten_json(raw, roots, widgets)
    elif path.suffix == ".jsonl":
        new = _rewritten_jsonl(raw, roots)
    else:
        new = rewrite_text(raw, roots)
    if new == raw:
        return False
    temporary = path.with_name(f".{path.name}.rewrite")
    temporary.write_text(new, encoding="utf-8", newline="")
    os.replace(temporary, path)  # a crash leaves the old file, never half of the new one
    return True


def rewrite_tree(root: str | os.PathLike, roots: Roots, *, widgets: bool = False) -> list[str]:
    """Rewrite every text file under `root` (same selection as `find_unportable`); the files changed."""
    root = Path(root)
    changed = []
    for relative, path in _scanned_files(root):
        try:
            if rewrite_file(path, roots, widgets=widgets):
                changed.append(relative.as_posix())
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    return changed


def _parse_old_root(text: str) -> tuple[str, str]:
    old, sep, new = text.partition("=")
    root = _normalized_root(old) if os.path.isabs(old) else None
    if not sep or root is None:
        raise argparse.ArgumentTypeError(f"--old-root {text!r}: expected /absolute/old=NEW (NEW may be empty)")
    return root, new.rstrip("/")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saie_lib.record_audit", description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", metavar="DIR", help="list machine paths, secret-like tokens and rows written "
                                                       "twice or out of order; exit 1 if any")
    action.add_argument("--rewrite", metavar="DIR", help="rewrite the text files under DIR in place")
    parser.add_argument("--old-root", action="append", type=_parse_old_root, default=[], metavar="OLD=NEW",
                        help="with --rewrite: map OLD/rest to NEW/rest (empty NEW: rest); first match wins")
    parser.add_argument("--strip-widgets", action="store_true",
                        help="with --rewrite: drop frozen progress widgets from notebooks (text/plain kept)")
    args = parser.parse_args(argv)
    if not Path(args.check or args.rewrite).is_dir():
        parser.error(f"{args.check or args.rewrite}: not a directory")
    if args.rewrite:
        if not args.old_root and not args.strip_widgets:
            parser.error("--rewrite needs --old-root and/or --strip-widgets")
        for name in rewrite_tree(args.rewrite, args.old_root, widgets=args.strip_widgets):
            print(f"rewrote {name}")
        return 0
    findings = find_unportable(args.check)
    for name, line, text in findings:
        print(f"{name}:{line}: {text}")
    inconsistent = tree_findings(args.check)  # rows twice or out of order: a run written by two processes
    for finding in inconsistent:
        print(finding)
    return 1 if findings or inconsistent else 0


if __name__ == "__main__":
    sys.exit(main())
