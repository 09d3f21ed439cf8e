"""Operator YAML with line numbers, so every configuration error can point at its line.

Only ``yaml.safe_load`` semantics: the document is composed with the safe loader and turned into
plain Python values while the position of every mapping key and sequence item is remembered.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PathKey = tuple[str | int, ...]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class YamlError(Exception):
    """A YAML file that cannot be read; the message names the file and line."""


@dataclass
class YamlDocument:
    """Plain data plus the line (1-based) of every key and item, keyed by its path."""

    file: str
    data: object
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path`` or of its nearest ancestor that has one."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)

    def where(self, path: Sequence[str | int]) -> str:
        line = self.line_of(path)
        return f"{self.file}:{line}" if line else self.file


def load_yaml_text(text: str, file: str) -> YamlDocument:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark is not None else file
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlError(f"{where}: not valid YAML: {problem}") from None
    doc = YamlDocument(file=file, data=None)
    if node is None:
        return doc
    doc.data = _convert(node, (), doc.lines, file)
    return doc


def load_yaml_file(path: Path) -> YamlDocument:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlError(f"{path}: cannot read: {exc}") from None
    return load_yaml_text(text, str(path))


def expand_env(value: str, env: dict[str, str] | None = None) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}``; an unset variable without default becomes ''."""
    source = os.environ if env is None else env
    return _ENV_REF.sub(lambda m: source.get(m.group(1)) or (m.group(2) or ""), value)


def _convert(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], file: str) -> object:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, object] = {}
        for key_node, value_node in node.value:
            key = yaml.SafeLoader(" ").construct_object(key_node)
            if not isinstance(key, str | int | bool | float) or isinstance(key, bool):
                raise YamlError(f"{file}:{key_node.start_mark.line + 1}: keys must be text")
            skey = str(key)
            if skey in result:
                raise YamlError(f"{file}:{key_node.start_mark.line + 1}: duplicate key '{skey}'")
            lines[(*path, skey)] = key_node.start_mark.line + 1
            result[skey] = _convert(value_node, (*path, skey), lines, file)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), lines, file) for i, item in enumerate(node.value)]
    loader = yaml.SafeLoader(" ")
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise YamlError(f"{file}:{node.start_mark.line + 1}: {exc}") from None
