"""A scored block: how one block of a file is predicted, in this process or on a Dask worker.

The file-level figures are summed where the file is assembled (`tasks.scoring.score`), from the
`BlockPrediction`s, in block order.
"""

import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pyarrow import feather

from schemas.context import ContextSpec
from schemas.firewall import CLASS_NAMES
from tasks.ingest.parse import parse_block, quarantine_frame, split_set_aside, store_columns
from tasks.model.context import ContextTables, build_tables, context_features, valid_rows, write_arrow
from tasks.model.drift import bin_counts, reference_cuts


@dataclass(frozen=True)
class BlockPrediction:
    """One scored block: its predictions (valid rows' columns, `pred_label`, `attack_probability`),
    its rejected and set-aside rows, and the predicted class codes. Made wherever the block is
    scored (this process or a Dask worker); the file-level figures are summed where the file is
    assembled, from these, in block order."""

    rows: int
    out: pd.DataFrame
    rejected: pd.DataFrame
    outside: pd.DataFrame
    codes: np.ndarray
    input_bins: list[np.ndarray] | None = None  # rows per reference bin of each input (drift)


# Scores a file's blocks in order: (file, number of blocks, block loader, context tables) -> predictions
BlockLoader = Callable[[int], pd.DataFrame]


BlockScorer = Callable[[str, int, BlockLoader, ContextTables | None], Iterator[BlockPrediction]]


def predict_block(
    rows: pd.DataFrame, predictor, tables: ContextTables | None, index: int, source: str
) -> BlockPrediction:
    """Set the rejected and out-of-scope rows of a parsed block aside, and predict the others."""
    spec = predictor.preprocessing.spec
    rejected, outside = split_set_aside(rows)
    valid = rows.loc[~rejected & ~outside].reset_index(drop=True)
    features = context_features(valid, tables, index) if tables else None
    inputs = predictor.preprocessing.raw_inputs(valid, features)
    reference = predictor.preprocessing.reference
    codes, probability = predictor.predict_codes(predictor.preprocessing.scale(inputs))
    out = valid[list(store_columns(spec))].copy()
    out["pred_label"] = np.asarray(CLASS_NAMES, dtype=object)[codes]
    out["attack_probability"] = probability.astype(np.float32)
    return BlockPrediction(
        len(rows),
        out,
        quarantine_frame(rows.loc[rejected], source),
        rows.loc[outside, list(store_columns(spec))],
        codes,
        None if reference is None else bin_counts(inputs, reference_cuts(reference)),
    )


def local_scorer(predictor) -> BlockScorer:
    """Blocks scored in this process, one after another; the next block parses meanwhile."""

    def score(source: str, count: int, load: BlockLoader, tables: ContextTables | None):
        with ThreadPoolExecutor(1) as prefetch:
            pending = prefetch.submit(load, 0)
            for index in range(count):
                rows = pending.result()
                if index + 1 < count:
                    pending = prefetch.submit(load, index + 1)
                yield predict_block(rows, predictor, tables, index, source)

    return score


def parse_numbered_block(blocks: list, number: int) -> pd.DataFrame:
    return parse_block(blocks[number])


def context_pass(
    blocks: list, context: ContextSpec, folder: Path
) -> tuple[ContextTables, Callable[[int], pd.DataFrame]]:
    """Pass 1 of the context features over every block of a file, in this process, before any
    block is scored: a window feature counts the rows of its bucket in the whole file. Each
    block is parsed once; its rows wait in `folder` for pass 2, which reads them with the
    returned function (by block number)."""
    shutil.rmtree(folder, ignore_errors=True)
    parsed = folder / "parsed"
    parsed.mkdir(parents=True)

    def parse_and_keep(number: int) -> pd.DataFrame:
        rows = parse_block(blocks[number])
        write_arrow(rows, parsed / f"block-{number:05d}.arrow")
        return valid_rows(rows)

    tables = build_tables(range(len(blocks)), parse_and_keep, context, folder / "tables")
    return tables, lambda number: feather.read_feather(parsed / f"block-{number:05d}.arrow")


@dataclass(frozen=True)
class ClusterModel:
    """A Dask cluster whose workers hold a predictor (tasks/scoring/score_cluster.py)."""

    address: str
    plugin: str
