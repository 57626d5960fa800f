"""Reading the project's YAML files (recipes, profiles, studies): a mapping or a clear error naming the file and
line. Duplicate keys are refused (YAML would silently keep the last one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _strict_loader():
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {seen[key]})", key_node.start_mark)
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def read_yaml_mapping(path: Path, what: str = "file") -> dict[str, Any]:
    """The mapping in `path` (empty file -> {}); syntax errors and duplicate keys name the file and line."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read this {what} ({error})") from None
    try:
        data = yaml.load(text, Loader=_strict_loader()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ValueError(f"{path}{where}: not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a {what} must be a mapping of names to values, not {type(data).__name__}")
    return data
