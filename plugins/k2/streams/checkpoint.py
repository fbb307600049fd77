"""Checks a Spark streaming checkpoint before use, on the local disk or on S3 (K2_STREAM_CHECKPOINTS).
A damaged checkpoint is reported with its exact location and the ways forward; K2 never deletes or
rewrites one by itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from k2.errors import K2Error
from k2.settings import LakeSettings


def _recovery(checkpoint: str, lake: LakeSettings | None) -> str:
    if checkpoint.startswith("s3a://"):
        where = "s3://" + checkpoint.removeprefix("s3a://")
        endpoint = f" --endpoint-url {lake.s3_endpoint}" if lake is not None and lake.s3_endpoint else ""
        move = f"aws s3 mv --recursive{endpoint} {where} {where}.broken"
    else:
        move = f"mv {checkpoint} {checkpoint}.broken"
    return (
        f"choose one: (1) restore {checkpoint} from a backup and restart; (2) move it aside "
        f"(`{move}`) to re-read the topic from its earliest retained offset "
        "(Bronze then holds some records twice; Silver de-duplicates them); (3) move it aside and set "
        "startingOffsets to latest by hand, accepting a gap. K2 never deletes a checkpoint itself."
    )


def _file_system(checkpoint: str, lake: LakeSettings | None) -> tuple[Any, str]:
    """(pyarrow file system, path in it) of a local or ``s3a://`` checkpoint."""
    from pyarrow import fs

    if not checkpoint.startswith("s3a://"):
        return fs.LocalFileSystem(), str(Path(checkpoint))
    options: dict[str, Any] = {}
    if lake is not None:
        endpoint = lake.s3_endpoint
        options = {
            "region": lake.s3_region,
            "force_virtual_addressing": not lake.s3_path_style_access,
            **(
                {"access_key": lake.s3_access_key_id, "secret_key": lake.s3_secret_access_key}
                if lake.s3_access_key_id
                else {}
            ),
            **(
                {"endpoint_override": endpoint.split("://", 1)[-1], "scheme": endpoint.split("://", 1)[0]}
                if endpoint
                else {}
            ),
        }
    return fs.S3FileSystem(**options), checkpoint.removeprefix("s3a://").rstrip("/")


def checkpoint_problem(checkpoint: str | Path, lake: LakeSettings | None = None) -> K2Error | None:
    """None when the checkpoint is absent (first start) or readable; else what is wrong and the fix.
    ``lake`` gives the S3 settings for a checkpoint on S3."""
    from pyarrow import fs

    location = str(checkpoint)
    filesystem, root = _file_system(location, lake)

    def name(path: str) -> str:  # as the operator knows it
        return location + path[len(root) :]

    def read(path: str) -> str:
        with filesystem.open_input_stream(path) as stream:
            return stream.read().decode()

    if filesystem.get_file_info(root).type == fs.FileType.NotFound:
        return None
    metadata = f"{root}/metadata"
    has_metadata = filesystem.get_file_info(metadata).type == fs.FileType.File
    try:
        query_id = json.loads(read(metadata)).get("id") if has_metadata else None
    except (OSError, ValueError) as exc:
        return K2Error(f"the checkpoint metadata {name(metadata)} is unreadable: {exc}", _recovery(location, lake))
    if has_metadata and not query_id:
        return K2Error(f"the checkpoint metadata {name(metadata)} holds no query id", _recovery(location, lake))
    for log_dir in ("offsets", "commits"):
        listed = filesystem.get_file_info(fs.FileSelector(f"{root}/{log_dir}", allow_not_found=True))
        entries = sorted((i for i in listed if i.base_name.isdigit()), key=lambda i: int(i.base_name))
        if not entries:
            continue
        latest = entries[-1].path
        try:
            lines = read(latest).splitlines()
            if not lines or not lines[0].startswith("v"):
                raise ValueError("missing version header")
            for line in lines[1:]:
                json.loads(line)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            return K2Error(f"the checkpoint file {name(latest)} is corrupt ({exc})", _recovery(location, lake))
    return None
