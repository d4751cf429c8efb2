"""Job output echoed to the runner's own output, line by line, as supercronic
does: what a container's log collector (`docker logs`, journald) reads.

A `LineEcho` sits on one run's output pipe (it is that run's
`Launch.echo`): it cuts what the executor reads into lines and hands each
whole line, with its task id and run id, to an `EchoSink`. It does no I/O
and keeps at most `MAX_LINE` bytes of a line in memory, however long the
line a job prints: the rest of a longer line is dropped and the line ends
with `TRUNCATED`. The per-run log file is written by the executor as before,
complete; the echo is a copy.
"""

from __future__ import annotations

from typing import Protocol

MAX_LINE = 8 * 1024
"""Bytes of one output line echoed; the rest of a longer line is dropped."""
TRUNCATED = "…[truncated]"


class EchoSink(Protocol):
    """Where whole output lines go (the runner's output writer)."""

    def lines(self, task_id: str, run_id: int, texts: list[str]) -> None:
        """Take lines (without their newlines), in order. Must not block: a
        sink that cannot keep up drops lines and says how many."""


class LineEcho:
    """The echo of one run's output: bytes in, whole lines out to `sink`.

    Invariants: every line the job ends with a newline reaches the sink once,
    in order, cut to `MAX_LINE` bytes plus `TRUNCATED`; a last line without
    a newline reaches it at `end()`. Memory is bounded by `MAX_LINE` beyond
    the chunk being handled. The common case (a chunk of short lines) is cut
    and decoded by a few C-level calls per chunk, not per line: a job that
    prints 100,000 short lines costs the runner's loop milliseconds.
    """

    def __init__(self, task_id: str, run_id: int, sink: EchoSink) -> None:
        self.task_id = task_id
        self.run_id = run_id
        self.sink = sink
        self._partial = bytearray()
        self._cut = False  # the line being read is past MAX_LINE: drop until its newline
        self._ended = False

    def write(self, data: bytes) -> int:
        if self._ended or not data:
            return 0
        last = data.rfind(b"\n")
        if last < 0:
            self._add(data)
            return len(data)
        first = data.find(b"\n")
        out: list[str] = []
        # the line begun in an earlier chunk ends here
        self._add(data[:first])
        out.append(self._take())
        if first < last:
            block = data[first + 1:last]
            parts = block.split(b"\n")
            if max(map(len, parts)) <= MAX_LINE:
                # a newline is never inside a UTF-8 sequence: decoding the
                # block at once is decoding each line
                text = block.decode("utf-8", errors="replace")
                if "\r" in text:
                    out += [t[:-1] if t.endswith("\r") else t for t in text.split("\n")]
                else:
                    out += text.split("\n")
            else:
                for part in parts:
                    self._add(part)
                    out.append(self._take())
        self._add(data[last + 1:])
        self.sink.lines(self.task_id, self.run_id, out)
        return len(data)

    def flush(self) -> None:
        """Nothing: whole lines are handed on as they arrive."""

    def end(self) -> None:
        """The pipe is closed: hand on a last line that had no newline."""
        if not self._ended:
            if self._partial or self._cut:
                self.sink.lines(self.task_id, self.run_id, [self._take()])
            self._ended = True

    def _add(self, piece: bytes) -> None:
        if self._cut or not piece:
            return
        room = MAX_LINE - len(self._partial)
        if len(piece) > room:
            self._partial += piece[:room]
            self._cut = True
        else:
            self._partial += piece

    def _take(self) -> str:
        raw = bytes(self._partial)
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        # a line cut in the middle of a UTF-8 sequence shows U+FFFD there
        text = raw.decode("utf-8", errors="replace")
        if self._cut:
            text += TRUNCATED
        self._partial.clear()
        self._cut = False
        return text
