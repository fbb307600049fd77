"""Publishes each micro-batch's progress to the stream's state directory (read by Airflow)."""

from __future__ import annotations

import json
import time

from pyspark.sql.streaming import StreamingQueryListener

from k2.kafka.groups import GroupOffsetPublisher
from k2.streams.state import StreamPaths, append_progress, write_json


def progress_record(progress) -> dict:
    """The fields operators and the supervisor need, from a StreamingQueryProgress."""
    source = progress.sources[0] if progress.sources else None
    end_offsets = json.loads(source.endOffset) if source is not None and source.endOffset else {}
    return {
        "batch_id": progress.batchId,
        "query_id": str(progress.id),
        "run_id": str(progress.runId),
        "timestamp": progress.timestamp,  # trigger start, ISO-8601 UTC
        "completed_at": time.time(),
        "rows": progress.numInputRows,
        "input_rows_per_s": progress.inputRowsPerSecond,
        "processed_rows_per_s": progress.processedRowsPerSecond,
        "batch_duration_ms": progress.batchDuration,
        "duration_ms": dict(progress.durationMs),
        "end_offsets": end_offsets,  # {topic: {partition: next offset}}
        "latest_offsets": json.loads(source.latestOffset) if source is not None and source.latestOffset else {},
    }


class ProgressListener(StreamingQueryListener):
    def __init__(self, paths: StreamPaths, publisher: GroupOffsetPublisher | None = None) -> None:
        self.paths = paths
        self.publisher = publisher

    def onQueryStarted(self, event) -> None:
        pass

    def onQueryProgress(self, event) -> None:
        record = progress_record(event.progress)
        append_progress(self.paths, record)
        if self.publisher is not None and record["rows"]:
            self.publisher.publish(record["end_offsets"])

    def onQueryIdle(self, event) -> None:
        # no new data: proof of life for the stall rule, which must not mistake quiet for stuck
        # trigger_at: when the idle trigger started (Bronze settlement: no batch of an earlier time follows)
        write_json(self.paths.idle, {"idle_at": time.time(), "trigger_at": event.timestamp, "query_id": str(event.id)})

    def onQueryTerminated(self, event) -> None:
        pass
