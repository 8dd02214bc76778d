"""Append-only JSON-lines logs: history.jsonl (every operation) and events.jsonl (migrations…).

One writer per file, a lock around each line, a flush after each line: a crash mid-run still
leaves every record written so far, and the history is on disk before any checker reads it.
All timestamps are CLOCK_MONOTONIC nanoseconds (`t`, `t0`, `t1`), shared by every process of the
machine, so client operations and hypervisor events line up on one axis; `wall` maps them back.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from .records import Rec


def now_ns() -> int:
    return time.monotonic_ns()


class RecordSink(Protocol):
    """Where an event writes its records: a run's events.jsonl (JsonlWriter), or a fan-out to
    several (runbook 60 also writes each VM's records into that VM's folder)."""

    def write(self, record: dict[str, Any], /) -> None: ...


class JsonlWriter:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", buffering=1)
        self._lock = threading.Lock()
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, default=str, separators=(",", ":"))
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()
            self.count += 1

    def write_line(self, line: str) -> None:
        """A record that is already one JSON line (from a client process): stored verbatim."""
        with self._lock:
            self._fh.write(line.rstrip("\n") + "\n")
            self._fh.flush()
            self.count += 1

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def clock_anchor() -> dict[str, Any]:
    """Pairs the monotonic clock with wall time so reports can print real times."""
    return {"type": Rec.CLOCK, "t": time.monotonic_ns(), "wall": time.time()}


UNREADABLE = "unreadable"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every record. A torn last line (the writer was killed mid-line: no newline after it) is
    skipped; any other line that is not a JSON object becomes an `unreadable` record naming the
    file and line, so a checker sees the evidence is damaged instead of judging what is left."""
    return list(iter_jsonl(path))


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    try:
        fh = open(path, "rb")  # decoded per line: one damaged line must not hide the others
    except FileNotFoundError:
        return
    with fh:
        for n, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line:
                continue
            try:
                record = json.loads(line.decode("utf-8"))
                if not isinstance(record, dict):
                    raise ValueError(f"a JSON {type(record).__name__}, not an object")
            except ValueError as exc:  # also UnicodeDecodeError
                if not raw.endswith(b"\n"):  # the last line, cut off by a crash: not evidence yet
                    continue
                yield {"type": UNREADABLE, "path": str(path), "line": n, "error": str(exc)[:200]}
                continue
            yield record


def unreadable(*records: list[dict[str, Any]]) -> list[str]:
    """`file:line` of every damaged line found by read_jsonl in these record lists."""
    return [f"{r['path']}:{r['line']}" for rs in records for r in rs if r.get("type") == UNREADABLE]


class Tail:
    """The complete lines appended to a JSON-lines file since the last read (a line still being
    written waits for the next read); a file that does not exist yet is empty."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = Path(path), 0

    def new_records(self) -> Iterator[dict[str, Any]]:
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return
        with fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # the checker's `history` check names damaged lines; metrics skip them
            if isinstance(rec, dict):
                yield rec
