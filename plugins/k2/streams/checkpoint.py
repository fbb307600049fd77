"""Checks a Spark streaming checkpoint before use. A damaged checkpoint is reported with its exact
path and the ways forward; K2 never deletes or rewrites one by itself."""

from __future__ import annotations

import json
from pathlib import Path

from k2.errors import K2Error


def _recovery(checkpoint: Path) -> str:
    return (
        f"choose one: (1) restore {checkpoint} from a backup and restart; (2) move it aside "
        f"(`mv {checkpoint} {checkpoint}.broken`) to re-read the topic from its earliest retained offset "
        "(Bronze then holds some records twice; Silver de-duplicates them); (3) move it aside and set "
        "startingOffsets to latest by hand, accepting a gap. K2 never deletes a checkpoint itself."
    )


def checkpoint_problem(checkpoint: Path) -> K2Error | None:
    """None when the checkpoint is absent (first start) or readable; else what is wrong and the fix."""
    if not checkpoint.exists():
        return None
    metadata = checkpoint / "metadata"
    try:
        query_id = json.loads(metadata.read_text()).get("id") if metadata.exists() else None
    except (OSError, ValueError) as exc:
        return K2Error(f"the checkpoint metadata {metadata} is unreadable: {exc}", _recovery(checkpoint))
    if metadata.exists() and not query_id:
        return K2Error(f"the checkpoint metadata {metadata} holds no query id", _recovery(checkpoint))
    for log_dir in ("offsets", "commits"):
        entries = sorted((p for p in (checkpoint / log_dir).glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
        if not entries:
            continue
        latest = entries[-1]
        try:
            lines = latest.read_text().splitlines()
            if not lines or not lines[0].startswith("v"):
                raise ValueError("missing version header")
            for line in lines[1:]:
                json.loads(line)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            return K2Error(f"the checkpoint file {latest} is corrupt ({exc})", _recovery(checkpoint))
    return None
