"""Importers: a crontab or a systemd timer in, jobctl task tables out.

Pure: each importer takes the text it was given (and the path it came
from, for `file:line`), never touches the config or the system, and returns
an `ImportResult`: the task tables in order, each with the comment lines
that explain where it came from, the `[jobctl]` settings the source implies,
and every line it refused with the reason. Nothing is dropped silently: what
has no exact equivalent is refused, and what jobctl does differently in a
way that cannot change when or what runs is said in a comment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jobctl.model import Origin, Problem


@dataclass(frozen=True)
class ImportedTask:
    """One task table, and the comment lines (without `# `) to write above it."""

    table: dict[str, object]
    comments: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportResult:
    """What an importer made of its input.

    `refused` holds one Problem per line (or unit) that has no exact jobctl
    equivalent; the caller decides whether the rest may be used
    (`--skip-unsupported`) or nothing is (the default)."""

    source: str
    tasks: tuple[ImportedTask, ...] = ()
    settings: dict[str, object] = field(default_factory=dict)
    settings_comments: tuple[str, ...] = ()
    refused: tuple[Problem, ...] = ()


def refusal(path: Path, line: int, reason: str) -> Problem:
    return Problem(Origin(path, line), reason)


_SLUG_RE = re.compile(r"[^a-z0-9_.-]+")
_MAX_ID_STEM = 48


def slug(text: str, fallback: str = "task") -> str:
    """A task id stem from free text: lower case, `[a-z0-9_.-]`, no leading punctuation."""
    out = _SLUG_RE.sub("-", text.lower()).strip("-_.")
    out = re.sub(r"-{2,}", "-", out)[:_MAX_ID_STEM].strip("-_.")
    return out or fallback


class IdAllocator:
    """Readable, unique ids: `stem`, then `stem-2`, `stem-3`, ... in order of
    asking, skipping ids already `taken` (those of the config written to)."""

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self._taken = set(taken)

    def allocate(self, stem: str) -> str:
        candidate, n = stem, 1
        while candidate in self._taken:
            n += 1
            candidate = f"{stem}-{n}"
        self._taken.add(candidate)
        return candidate


def render_toml(result: ImportResult, settings_env_first: bool = True) -> str:
    """The result as a config file: a comment naming the source, the
    `[jobctl]` table if the source implies one, then one commented
    `[[tasks]]` table per task."""
    out = [f"# imported from {result.source} by `jobctl import`\n"]
    if result.settings or result.settings_comments:
        out.append("\n")
        out.extend(comment_lines(result.settings_comments))
        if result.settings:
            out.append("[jobctl]\n")
            out.extend(toml_line(k, v) for k, v in result.settings.items())
    for task in result.tasks:
        out.append("\n")
        out.extend(comment_lines(task.comments))
        out.append("[[tasks]]\n")
        out.extend(toml_line(k, v) for k, v in task.table.items())
    return "".join(out)


def comment_lines(comments: Sequence[str]) -> list[str]:
    # a comment line may not hold a newline or another control character
    return [("# " + _printable(c)).rstrip() + "\n" for c in comments]


def _printable(text: str) -> str:
    return "".join(ch if ch == "\t" or ch >= " " and ch != "\x7f" else repr(ch)[1:-1] for ch in text)


def toml_line(key: str, value: object) -> str:
    """`key = value` as one TOML line, written as `jobctl add` writes keys."""
    from jobctl.editing import key_line

    return key_line(key, value)
