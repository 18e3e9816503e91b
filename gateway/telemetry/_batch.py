"""A batching span processor with less work per span than the SDK's BatchSpanProcessor: ending a sampled span
appends it to a deque and wakes the export thread only when a batch is full (no process-id check, no
per-span metrics hook). The thread exports full batches as they fill, and whatever is queued every
`schedule_delay_s`; shutdown exports the rest. Configured by the SDK's OTEL_BSP_* variables.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import weakref
from collections.abc import Mapping

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, Context, attach, set_value
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["BatchExport"]

log = logging.getLogger("ultra_gateway")


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        log.warning("%s=%r is not a positive integer; using %d", name, raw, default)
        return default
    return value


class BatchExport(SpanProcessor):
    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_batch: int = 128,
        max_queue: int = 2048,
        schedule_delay_s: float = 5.0,
    ) -> None:
        self.exporter = exporter
        self.max_batch = min(max_batch, max_queue)
        self.max_queue = max_queue
        self.schedule_delay_s = schedule_delay_s
        self._queue: collections.deque[ReadableSpan] = collections.deque(maxlen=max_queue)
        self._dropped = 0
        self._wake = threading.Event()
        self._export_lock = threading.Lock()
        self._stopping = False
        self._thread = self._start()
        if hasattr(os, "register_at_fork"):  # a forked child has the queue but not the thread
            restart = weakref.WeakMethod(self._restart)
            os.register_at_fork(after_in_child=lambda: (method := restart()) is not None and method())

    @classmethod
    def from_env(cls, exporter: SpanExporter, env: Mapping[str, str], *, max_batch: int) -> BatchExport:
        """OTEL_BSP_MAX_EXPORT_BATCH_SIZE (else `max_batch`), OTEL_BSP_MAX_QUEUE_SIZE (2048) and
        OTEL_BSP_SCHEDULE_DELAY (milliseconds, 5000), as the SDK reads them."""
        return cls(
            exporter,
            max_batch=_positive(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", max_batch),
            max_queue=_positive(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048),
            schedule_delay_s=_positive(env, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000,
        )

    def _start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="OtelBatchSpanExport", daemon=True)
        thread.start()
        return thread

    def _restart(self) -> None:
        self._queue.clear()
        self._wake = threading.Event()
        self._export_lock = threading.Lock()
        if not self._stopping:
            self._thread = self._start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled or self._stopping:
            return
        queue = self._queue
        if len(queue) == self.max_queue:
            self._dropped += 1  # appending drops the oldest, as the SDK's processor does
        queue.append(span)
        if len(queue) >= self.max_batch and not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))  # the export's own HTTP is not traced
        while not self._stopping:
            full = self._wake.wait(self.schedule_delay_s)
            self._wake.clear()
            if self._stopping:
                break
            self._export(everything=not full)
        self._export(everything=True)

    def _export(self, *, everything: bool) -> None:
        with self._export_lock:
            queue = self._queue
            while len(queue) >= self.max_batch or (everything and queue):
                batch = [queue.popleft() for _ in range(min(self.max_batch, len(queue)))]
                if self._dropped:
                    log.warning("Span queue full: dropped %d spans", self._dropped)
                    self._dropped = 0
                try:
                    self.exporter.export(batch)
                except Exception:
                    log.exception("Exception while exporting spans")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self._stopping:
            return False
        self._export(everything=True)
        return True

    def shutdown(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(30)
        self.exporter.shutdown()
