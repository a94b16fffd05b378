"""Staged writes: every block is parsed and written to the stage of a new version of its
partition, on the Dask cluster, in the same task, so that rows never travel; only counts come
back. The stage becomes the partition's version on commit (`tasks.ingest.store`), or is removed."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dask.dataframe as dd
import pandas as pd
from distributed import Client, as_completed

from schemas.datasets import DatasetSpec, get_dataset
from tasks.ingest.lines import Block
from tasks.ingest.parse import empty_output, parse_block, quarantine_frame, split_set_aside, store_columns
from tasks.ingest.store import Stage, journal_path, new_stage
from tasks.progress import Progress

ROW_KINDS = ("kept", "quarantined", "out_of_scope")  # every row of a block is one of these
SUMMARY_META = pd.DataFrame(
    {"kind": pd.Series(dtype="str"), "key": pd.Series(dtype="str"), "count": pd.Series(dtype="int64")}
)


def store_partition(
    rows: pd.DataFrame, stage: Stage, source: str, dataset: str, partition_info: dict | None = None
) -> pd.DataFrame:
    """Write one block's kept, rejected and out-of-scope rows to the stage; return its counts
    (kind, key, count). Runs in the same task as the block's parse, so rows never travel."""
    spec = get_dataset(dataset)
    number = partition_info["number"] if partition_info else 0
    rejected, outside = split_set_aside(rows)
    valid = rows.loc[~rejected & ~outside, list(store_columns(spec))]
    quarantined = quarantine_frame(rows.loc[rejected], source)
    set_aside = rows.loc[outside, list(store_columns(spec))]
    name = f"part-{number:05d}.parquet"
    valid.to_parquet(stage.data / name, index=False)
    quarantined.to_parquet(stage.quarantine / name, index=False)
    set_aside.to_parquet(stage.out_of_scope / name, index=False)
    return block_counts(valid, quarantined, set_aside, spec)


def block_counts(
    valid: pd.DataFrame, quarantined: pd.DataFrame, set_aside: pd.DataFrame, spec: DatasetSpec
) -> pd.DataFrame:
    """One block's counts as rows (kind, key, count): rows kept, quarantined and out of scope,
    by reason, class and raw label; unknown categories; the first and last time (count 0)."""
    parts = [
        ("kept", pd.Series({"": len(valid)})),
        ("quarantined", pd.Series({"": len(quarantined)})),
        ("out_of_scope", pd.Series({"": len(set_aside)})),
        ("reason", quarantined["rule"].value_counts()),
        ("class", valid[spec.label_column].value_counts()),
        ("out_of_scope_label", set_aside[spec.label_column].value_counts()),
    ]
    for column in spec.categorical:
        unknown = valid[column.name][~valid[column.name].isin(column.vocabulary)]
        parts.append(("unknown", unknown.value_counts().rename(lambda v, c=column.name: f"{c}={v}")))
    if spec.time_column and len(valid):
        times = valid[spec.time_column]
        parts.append(("time", pd.Series({stamp(times.min(), spec): 0, stamp(times.max(), spec): 0})))
    summary = [(kind, str(key), int(count)) for kind, counts in parts for key, count in counts.items()]
    return pd.DataFrame(summary, columns=list(SUMMARY_META.columns)).astype(SUMMARY_META.dtypes)


def write_partitions(
    blocks: list[Block], stage: Stage, client: Client, progress: Progress | None = None
) -> dict:
    """Parse, validate and write every block on the cluster; return the counts for the report.
    `progress` advances by each block's rows as the block is done."""
    spec = blocks[0].spec
    rows = dd.from_map(
        parse_block, blocks, meta=empty_output(spec), enforce_metadata=False, label="parse-block"
    )
    summaries = rows.map_partitions(
        store_partition, stage, blocks[0].path, spec.name, meta=SUMMARY_META, align_dataframes=False
    )
    summary = compute_blocks(summaries, client, progress)
    totals = summary.groupby(["kind", "key"])["count"].sum()
    times = sorted(summary.loc[summary["kind"] == "time", "key"])

    def of(kind: str) -> dict[str, int]:
        return {key: int(n) for (k, key), n in totals.items() if k == kind}

    return {
        "rows_kept": of("kept").get("", 0),
        "rows_quarantined": of("quarantined").get("", 0),
        "rows_out_of_scope": of("out_of_scope").get("", 0),
        "reasons": of("reason"),
        "classes": of("class"),
        "out_of_scope": of("out_of_scope_label"),
        "unknown_categories": of("unknown"),
        "time_first": times[0] if times else None,
        "time_last": times[-1] if times else None,
    }


def compute_blocks(summaries: dd.DataFrame, client: Client, progress: Progress | None) -> pd.DataFrame:
    """Every block's counts, in block order; each block's rows count as done when it finishes."""
    futures = client.compute(summaries.to_delayed())
    try:
        for future in as_completed(futures, loop=client.loop):  # the client is not the default
            counts = future.result()
            if progress is not None:
                progress.advance(int(counts.loc[counts["kind"].isin(ROW_KINDS), "count"].sum()))
    except BaseException:
        client.cancel(futures)
        raise
    return pd.concat([future.result() for future in futures], ignore_index=True)


def stamp(value, spec: DatasetSpec) -> str | None:
    return None if pd.isna(value) else pd.Timestamp(value).strftime(spec.time_format)


@contextmanager
def staged_version(store: Path, part: str) -> Iterator[Stage]:
    """A stage for a new version of `part`, with the partition's lock held. Once committed,
    the journal owns it; a failed or skipped ingest removes it, with any decompressed copy."""
    stage = new_stage(store, part)
    try:
        yield stage
    finally:
        if not journal_path(store, part).exists():
            shutil.rmtree(stage.root, ignore_errors=True)
