"""Recognising a pull's records, and doing it one page ahead in a child process for large pulls.

The first half of planning a record needs nothing but the record, the mapping and what the
run knew when the pull began: its raw fingerprint (is it unchanged since the source link last
saw it?), the mapping (or the reason it is quarantined), its stored key and whether the pull
already had that key — and, for a record no link knows, the row a create would insert
(encrypted, hashed, masked, with its provenance and change-feed entry), built in case the run
creates it (in a child, only while the run has pages waiting). That is `Recogniser`. The
second half — correlation, diffing against stored rows, writing — needs the run's database
transaction and stays in the run's process.

On two or more cores the first half runs beside the second: after `AHEAD_AFTER_PAGES` pages
(small pulls never pay for a process) the run forks a child that continues the connector's own
page generator where it stood, recognises each page and sends the outcomes back through a pipe,
while the run plans and writes the previous ones. Up to `PAGES_AHEAD` pages wait in the child
(`_Outbox`), so it keeps working while the run waits on its database, and memory stays flat.
At a million staff this takes fetching, JSON decoding, fingerprinting, mapping and most of the
creates' rows (~40 CPU-seconds of a ~60-second first load on SQLite) off the run's path.

Only connectors that say they can be continued in a child are read ahead (`read_ahead = True`:
the HTTP connectors; the child drops the parent's pooled connections and opens its own, so the
parent's keep working). The child never touches the database (fork copies the open connection;
using it from two processes would corrupt it) and leaves with `os._exit`, running no cleanup
that could close the parent's connections. A source error in the child ends the pull the same
way as in the parent; a child that dies ends it as a source error too, so nothing half-read is
ever applied as if it were whole.
"""
from __future__ import annotations

import marshal
import os
import pickle
import queue
import signal
import threading
import traceback
from collections.abc import Callable, Container, Iterator
from multiprocessing import Pipe
from typing import Any

from connectors import Connector, SourceError
from mappings import Mapping, MappingContext, MappingError

AHEAD_AFTER_PAGES = 8
PAGES_AHEAD = 8  # how far the child may run ahead of the run (encoded pages waiting to be sent)

# What recognising a record can come to (the first element of each outcome tuple).
UNCHANGED = 0   # (UNCHANGED, ext): its fingerprint is that of an active link not yet seen
RECORD = 1      # (RECORD, ext, data, key_field, fingerprint, new_row): mapped; to be planned
QUARANTINE = 2  # (QUARANTINE, key, raw, field, reason): key is None when none could be made

Outcome = tuple[Any, ...]
DUPLICATE = "duplicate record key in this pull; the first one was used"

# How a message crosses the pipe: marshal for what it can carry — exactly the built-in types
# outcomes are made of (tuples, dicts, lists, str, int, float, bool, None) — else pickle, which
# keeps any other type (a date a mapping left as one, a subclass). A staff page of a million-
# staff first load: marshal encodes it in 0.95 ms against pickle's 2.45 and decodes it in 1.79
# against 2.21 (1 000 such pages).
_MARSHALLED, _PICKLED = b"m", b"p"


def encode(message: tuple[Any, ...]) -> bytes:
    try:
        return _MARSHALLED + marshal.dumps(message)
    except ValueError:  # a type marshal does not carry
        return _PICKLED + pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def decode(blob: bytes) -> tuple[Any, ...]:
    body = memoryview(blob)[1:]
    return marshal.loads(body) if blob[:1] == _MARSHALLED else pickle.loads(body)


class Recogniser:
    """The per-record first half of planning one pull (module docstring). `seen` and
    `protected` grow as pages are recognised; a child process continues with a copy of them."""

    building = True  # build creates' rows; off while the child is behind the run (_in_child)

    def __init__(self, *, kind: str, mapping: Mapping, context: MappingContext, salt: bytes,
                 fingerprint: Callable[[dict[str, Any], bytes], str], by_fingerprint: dict[str, str],
                 required: tuple[str, ...], prepare: Callable[[dict[str, Any]], dict[str, Any]],
                 stored_key: Callable[[str, str | None], str],
                 best_effort_key: Callable[[dict[str, Any]], str | None],
                 build_row: Callable[[dict[str, Any]], Any] | None = None,
                 linked: Container[str] = ()) -> None:
        self.kind, self.mapping, self.context, self.salt = kind, mapping, context, salt
        self.fingerprint, self.by_fingerprint, self.required = fingerprint, by_fingerprint, required
        self.prepare, self.stored_key, self.best_effort_key = prepare, stored_key, best_effort_key
        # The row a create of a record would insert, built for records no link knows yet.
        self.build_row, self.linked = build_row, linked
        self.seen: set[str] = set()
        self.protected: set[str] = set()

    def page(self, records: list[dict[str, Any]]) -> list[Outcome]:
        out: list[Outcome] = []
        append, seen = out.append, self.seen
        kind, context, salt = self.kind, self.context, self.salt
        fingerprint, by_fingerprint, required, mapping = self.fingerprint, self.by_fingerprint, self.required, self.mapping
        for raw in records:
            fp = fingerprint(raw, salt)
            ext = by_fingerprint.get(fp)
            if ext is not None and ext not in seen:
                seen.add(ext)
                append((UNCHANGED, ext))
                continue
            try:
                rec = mapping.map(kind, raw, context)
                data = self.prepare(rec.data)
                missing = [f for f in required if not data.get(f)]
                if missing:
                    raise MappingError("required field is empty", field=missing[0])
            except MappingError as exc:
                key = self.best_effort_key(raw)
                if key:
                    self.protected.add(key)
                append((QUARANTINE, key, raw, exc.field, str(exc)))
                continue
            ext = self.stored_key(rec.external_id, rec.key_field)
            if ext in seen:
                append((QUARANTINE, ext, raw, rec.key_field, DUPLICATE))
                continue
            seen.add(ext)
            append((RECORD, ext, data, rec.key_field, fp, self._new_row(ext, data)))
        return out

    def _new_row(self, ext: str, data: dict[str, Any]) -> Any:
        if self.build_row is None or not self.building or ext in self.linked:
            return None
        try:
            return self.build_row(data)
        except Exception:  # noqa: BLE001 - the run builds it again and reports what fails
            return None


def recognised_pages(connector: Connector, kind: str, since: str | None,
                     recogniser: Recogniser) -> Iterator[tuple[list[Outcome], int, str | None]]:
    """(outcomes, records read, cursor) per page of the pull, in source order; raises
    SourceError as `connector.read` would. Large pulls of read-ahead connectors are recognised
    in a child process (module docstring)."""
    pages = connector.read(kind, since=since)
    for number, page in enumerate(pages, 1):
        yield recogniser.page(page.records), len(page.records), page.cursor
        if number == AHEAD_AFTER_PAGES and getattr(connector, "read_ahead", False) and hasattr(os, "fork"):
            yield from _in_child(connector, pages, recogniser)
            return


class _Outbox:
    """The child's side of the pipe, up to `PAGES_AHEAD` pages deep.

    A pipe holds less than a page, so a child sending straight into it waits for the run to take
    each page and is never more than one ahead; while the run then waits on its database, the
    child idles too, and the run waits on the child afterwards. Here the child encodes a page
    and queues it, and a thread writes the queue into the pipe, so the child keeps recognising
    while the run is busy (memory: a few encoded pages). If the parent is gone, the rest is
    dropped and the child ends with status 1."""

    def __init__(self, sender: Any) -> None:
        self.sender = sender
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=PAGES_AHEAD)
        self.broken = False
        self.thread = threading.Thread(target=self._write, name="dualline-read-ahead", daemon=True)
        self.thread.start()

    def _write(self) -> None:
        while (blob := self.queue.get()) is not None:
            if not self.broken:
                try:
                    self.sender.send_bytes(blob)
                except BaseException:  # noqa: BLE001 - the parent is gone: drain, nothing to tell
                    self.broken = True

    def put(self, message: tuple[Any, ...]) -> None:
        self.queue.put(encode(message))

    def backlog(self) -> int:
        """Pages queued that the run has not begun to take."""
        return self.queue.qsize()

    def close(self) -> int:
        """Wait until everything queued is written; the child's exit status."""
        self.queue.put(None)
        self.thread.join()
        return 1 if self.broken else 0


def _in_child(connector: Connector, pages: Iterator[Any],
              recogniser: Recogniser) -> Iterator[tuple[list[Outcome], int, str | None]]:
    receiver, sender = Pipe(duplex=False)
    pid = os.fork()
    if pid == 0:  # the child: recognise the rest of the pages, send them, leave
        receiver.close()
        outbox: _Outbox | None = None
        try:
            outbox = _Outbox(sender)
            connector.forget_connections()
            for page in pages:
                # Creates' rows are built here only while the run has pages waiting; when it
                # waits for this child, the run builds them itself (sync.apply does for any
                # create that comes without), so whichever side is slower sheds that work.
                recogniser.building = outbox.backlog() > 0
                outbox.put(("page", recogniser.page(page.records), len(page.records), page.cursor))
            outbox.put(("done",))
        except SourceError as exc:
            outbox.put(("source_error", exc.message, exc.error_class))  # type: ignore[union-attr]
        except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
            if outbox is not None:
                outbox.put(("crash", traceback.format_exc()))
        finally:
            # Never back into the parent's code, whatever failed (no outbox: the parent sees
            # the pipe close and reports a source error).
            os._exit(outbox.close() if outbox is not None else 1)
    sender.close()
    # The parent's copy of the page generator is never resumed: the child owns the rest.
    finished = False
    try:
        while True:
            try:
                message = decode(receiver.recv_bytes())
            except EOFError:
                raise SourceError("the process reading ahead ended before the pull was whole",
                                  error_class="transport") from None
            if message[0] == "page":
                yield message[1], message[2], message[3]
            elif message[0] == "done":
                finished = True
                return
            elif message[0] == "source_error":
                finished = True
                raise SourceError(message[1], error_class=message[2])
            else:
                finished = True
                raise RuntimeError(f"reading ahead failed:\n{message[1]}")
    finally:
        receiver.close()
        if not finished:  # the run stopped early: the child has nothing more to do
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.waitpid(pid, 0)
