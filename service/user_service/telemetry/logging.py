"""Structured logs: one JSON object per line, carrying the active trace and span ids.

Every record goes through one bounded queue to one writer thread (``LogWriter``), which hands
it to its sinks: stderr always; OTLP once the server's telemetry is up (``log_export``).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from logging.handlers import QueueHandler, QueueListener
from typing import Literal, TextIO

import grpc
from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from user_service.api.call import RpcCall, current_principal
from user_service.api.methods import HEALTH_SERVICE
from user_service.telemetry.grpc_codes import GO_CODE_NAMES

LogFormat = Literal["json", "text"]
ACCESS_LOGGER = "user_service.access"
GRPC_CORE_LOGGER = "grpc._cython.cygrpc"
_HEALTH_SERVICE = HEALTH_SERVICE.full_name


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id``/``span_id`` of the active span, so a log line leads to its trace, and
    ``trace_sampled``: whether that trace was kept (is in Jaeger) or only its id travelled."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
            record.trace_sampled = context.trace_flags.sampled
        return True


class ClientGarbageFilter(logging.Filter):
    """Keeps grpc's complaint about undecodable header bytes from flooding the log.

    grpc logs every header value that is not UTF-8 at ERROR, with a traceback, before any
    of this service's code runs — so any client can write a traceback per request. It is
    a client mistake (the call goes on, the value decoded as Latin-1), so it becomes one
    WARNING line without traceback per ``interval`` seconds, saying how many were folded.
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._interval, self._clock = interval, clock
        self._next_at = 0.0
        self._folded = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Invalid encoding on"):
            return True
        now = self._clock()
        if now < self._next_at:
            self._folded += 1
            return False
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = (
            "a client sent header bytes that are not UTF-8 (%d more since the last such line)",
            (self._folded,),
        )
        record.exc_info = record.exc_text = None
        self._next_at, self._folded = now + self._interval, 0
        return True


class BoundedQueueHandler(QueueHandler):
    """Hands records to the writer thread; never blocks: on a full queue the record is
    dropped and counted, so a stalled stderr cannot stall the event loop."""

    def __init__(self, capacity: int) -> None:
        super().__init__(queue.Queue(capacity))
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


# A record carrying this attribute is a flush marker (``LogWriter.flush``), not a line.
_FLUSHED = "log_writer_flushed"


class _Sinks(logging.Handler):
    """The writer thread's one handler: passes each record to every sink whose level it meets.
    Sinks are swapped as a whole tuple, so adding one never races the thread reading them."""

    def __init__(self, *sinks: logging.Handler) -> None:
        super().__init__()
        self.sinks = sinks

    def handle(self, record: logging.LogRecord) -> bool:
        if (flushed := vars(record).get(_FLUSHED)) is not None:
            flushed.set()
            return True
        for sink in self.sinks:
            if record.levelno >= sink.level:
                sink.handle(record)
        return True


class LogWriter:
    """The process's log writer: a bounded queue in front (``BoundedQueueHandler``: the caller
    never waits) and one thread behind it that formats and hands each record to the sinks."""

    def __init__(self, to_writer: BoundedQueueHandler, stderr: logging.Handler) -> None:
        self._queue = to_writer.queue
        self._sinks = _Sinks(stderr)
        self._listener = QueueListener(self._queue, self._sinks)
        self._listener.start()

    def add_sink(self, sink: logging.Handler) -> None:
        self._sinks.sinks = (*self._sinks.sinks, sink)

    def remove_sink(self, sink: logging.Handler, timeout: float = 1.0) -> None:
        """What was queued before this call reaches ``sink`` first (waiting at most ``timeout``):
        a server's last lines — "shutting down" — are exported before its telemetry stops."""
        self.flush(timeout)
        self._sinks.sinks = tuple(s for s in self._sinks.sinks if s is not sink)

    def flush(self, timeout: float) -> bool:
        """Waits until the records queued before this call have been handed to the sinks;
        False if that took longer than ``timeout`` (or the queue is full: then it is dropping)."""
        flushed = threading.Event()
        try:
            self._queue.put_nowait(logging.makeLogRecord({_FLUSHED: flushed}))
        except queue.Full:
            return False
        return flushed.wait(timeout)

    def stop(self) -> None:
        """Writes what is queued, then ends the thread."""
        self._listener.stop()


def configure_logging(
    level: str, log_format: LogFormat, *, stream: TextIO | None = None, capacity: int = 10_000
) -> LogWriter:
    """Routes every record through a bounded queue to one writer thread, which writes it to
    stderr (and to the sinks added later).

    The trace ids are attached on the calling side, where the span is current; formatting
    and the write happen on the writer thread. Stop the returned writer to flush.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "{levelname}{name}{message}",
                style="{",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",  # ISO 8601, UTC
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    to_writer = BoundedQueueHandler(capacity)
    to_writer.addFilter(TraceContextFilter())
    logging.getLogger(GRPC_CORE_LOGGER).addFilter(ClientGarbageFilter())
    root = logging.getLogger()
    root.handlers = [to_writer]
    root.setLevel(level.upper())
    return LogWriter(to_writer, handler)


class AccessLog:
    """An ``RpcObserver``: a line per finished RPC (health checks only at DEBUG) — or, with
    ``only_errors_and_slower_than`` (the default configuration), only for RPCs that did not
    end OK or took longer: what production services at thousands of calls per second log,
    since a line per call costs more than the call (the metrics count every call anyway).

    Fields are what an operator needs — method, type, code, duration, peer, message
    counts — and never request content.
    """

    def __init__(self, only_errors_and_slower_than: float | None = None) -> None:
        self._logger = logging.getLogger(ACCESS_LOGGER)
        self._slow = only_errors_and_slower_than

    def started(self, call: RpcCall) -> None:
        return None  # one line per RPC, written when it finishes

    def finished(
        self, call: RpcCall, state: None, code: grpc.StatusCode, duration: float, error: BaseException | None
    ) -> None:
        if self._slow is not None and code is grpc.StatusCode.OK and duration <= self._slow:
            return
        level = logging.DEBUG if call.service == _HEALTH_SERVICE else logging.INFO
        if not self._logger.isEnabledFor(level):
            return
        caller = current_principal.get()
        self._logger.log(
            level,
            "%s/%s %s",
            call.service,
            call.method,
            GO_CODE_NAMES[code],
            extra={
                "rpc_service": call.service,
                "rpc_method": call.method,
                "grpc_type": call.type,
                "grpc_code": GO_CODE_NAMES[code],
                "duration_ms": round(duration * 1000, 3),
                "peer": call.peer,
                "messages_received": call.received,
                "messages_sent": call.sent,
                "enduser_id": caller.subject if caller is not None else None,
            },
        )
