"""Reading the project's YAML files (recipes, profiles, studies): a mapping or a clear error naming the file and
line. Duplicate keys are refused (YAML would silently keep the last one), and so are aliases (`*name`): a few
nested aliases expand into billions of values ("billion laughs"), and no config needs them. A file above
MAX_YAML_BYTES is refused before it is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_YAML_BYTES = 1024 * 1024  # the largest committed config file is a few KB


def _strict_loader():
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"alias *{event.anchor} is not allowed in a config file (aliases can expand without "
                    "bound); write the value out", event.start_mark)
            return super().compose_node(parent, index)

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
        size = Path(path).stat().st_size
        if size > MAX_YAML_BYTES:
            raise ValueError(f"{path}: this {what} is {size:,} bytes; a config file may hold at most "
                             f"{MAX_YAML_BYTES:,} bytes")
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
