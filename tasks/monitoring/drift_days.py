"""Drift of any day, outside scoring (`nad drift`): a data file, or a partition of the store.

A day's model inputs come block by block, as scoring computes them: a data file's valid rows
(ingest's rules) with their context features from the whole file, or a stored partition's
Parquet parts with theirs from the whole partition. The predicted class mix comes from running
the model on those inputs; nothing is written but the report.
"""

import functools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from schemas.datasets import plain_name
from schemas.firewall import CLASS_NAMES
from tasks.errors import InputError, ModelError
from tasks.ingest.lines import plan_blocks
from tasks.ingest.parse import parse_block
from tasks.ingest.scan import resolve_partition, scan_file
from tasks.ingest.store import StoreError, check_store, part_dir, stored_parts
from tasks.ingest.store import read_report as read_store_report
from tasks.model.context import build_tables, context_features, stored_rows, valid_rows
from tasks.model.drift import (
    REPORT_SUFFIX,
    DriftReport,
    InputCounter,
    ReferenceProfile,
    drift_report,
    read_report,
    write_report,
)
from tasks.model.fusion import load_predictor
from tasks.model.preprocess import ARTIFACT_NAME, Preprocessing
from tasks.monitoring.drift_publish import report_files
from tasks.registry.champion import champion_uri, check_model_dataset, predictor_folder
from tasks.scoring.blocks import context_pass


def reference_of(prep: Preprocessing, model: str) -> ReferenceProfile:
    """The model's reference profile, or a ModelError: models trained before drift checks have none."""
    if prep.reference is None:
        raise ModelError(
            f"{model}: its {ARTIFACT_NAME} holds no reference profile (trained before drift checks, "
            f"artifact version < 6); drift cannot be checked: retrain it"
        )
    return prep.reference


def data_file_inputs(path: Path, prep: Preprocessing, workdir: Path) -> Iterator[np.ndarray]:
    """A data file's valid rows as the nets' inputs before scaling, block by block."""
    spec = prep.spec
    scan = scan_file(path, spec)
    blocks = plan_blocks(scan, resolve_partition(path, scan, spec, None), spec)
    tables, load = context_pass(blocks, prep.context, workdir) if prep.context else (None, None)
    load = load or (lambda number: parse_block(blocks[number]))
    for number in range(len(blocks)):
        valid = valid_rows(load(number))
        yield prep.raw_inputs(valid, context_features(valid, tables, number) if tables else None)


def store_days(store: Path, days: list[str] | None, dataset: str) -> list[str]:
    """The store's partitions to check: the ones named (checked to be there), or all of them."""
    try:
        check_store(store, dataset)
    except StoreError as error:
        raise InputError(str(error)) from error
    chosen = days or stored_parts(store)
    if not chosen:
        raise InputError(f"{store}: no stored days; nothing to check")
    for day in chosen:
        if read_store_report(store, day) is None:
            raise InputError(f"{store}: no stored partition {day}")
    return chosen


def store_day_inputs(store: Path, day: str, prep: Preprocessing, workdir: Path) -> Iterator[np.ndarray]:
    """A stored partition's rows as the nets' inputs before scaling, one Parquet part at a time."""
    files = sorted(part_dir(store, day).glob("part-*.parquet"))
    tables = None
    if prep.context is not None:
        read = functools.partial(stored_rows, spec=prep.context)
        tables = build_tables(files, read, prep.context, workdir / "tables")
    for number, path in enumerate(files):
        rows = pd.read_parquet(path)
        yield prep.raw_inputs(rows, context_features(rows, tables, number) if tables else None)


def day_drift(name: str, blocks: Iterator[np.ndarray], predictor, model: str):
    """The drift report of one day's input blocks, the model run on each for the class mix."""
    prep = predictor.preprocessing
    counter = InputCounter(reference_of(prep, model))
    predicted = np.zeros(len(CLASS_NAMES), dtype=np.int64)
    for inputs in blocks:
        counter.add(inputs)
        codes, _ = predictor.predict_codes(prep.scale(inputs))
        predicted += np.bincount(codes, minlength=len(CLASS_NAMES))
    if not counter.rows:
        raise InputError(f"{name}: no valid row; nothing to check")
    by_class = {cls: int(n) for cls, n in zip(CLASS_NAMES, predicted, strict=True)}
    return drift_report(name, model, counter, by_class)


def file_drift(path: Path, predictor, model: str):
    work = Path(tempfile.mkdtemp(prefix=".nad-drift-"))
    try:
        return day_drift(str(path), data_file_inputs(path, predictor.preprocessing, work), predictor, model)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def stored_day_drift(store: Path, day: str, predictor, model: str):
    work = Path(tempfile.mkdtemp(prefix=".nad-drift-"))
    try:
        blocks = store_day_inputs(store, day, predictor.preprocessing, work)
        return day_drift(f"{store}/{day}", blocks, predictor, model)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def drift_reports(
    paths: list[Path], store: Path | None, days: list[str] | None, model: str | None, spec, out: Path
) -> list[DriftReport]:
    """`nad drift`: the reports that `paths` name, or those of its data files and of the store's
    days, computed with `model` (default: the dataset's champion) and written to `out`."""
    reports = [Path(p) for p in paths if is_report(Path(p))]
    data_files = [Path(p) for p in paths if not is_report(Path(p))]
    loaded = [read_report(path) for path in report_files(reports)] if reports else []
    if not data_files and store is None:
        return loaded
    name = model or champion_uri(spec)
    folder = predictor_folder(name)
    check_model_dataset(folder, spec, name)
    predictor = load_predictor(folder)
    reference_of(predictor.preprocessing, name)  # before any day is read
    out.mkdir(parents=True, exist_ok=True)
    computed = [file_drift(path, predictor, name) for path in data_files]
    if store is not None:
        computed += [
            stored_day_drift(store, day, predictor, name) for day in store_days(store, days, spec.name)
        ]
    for report in computed:
        write_report(report, out / f"{Path(plain_name(Path(report.file))).stem}{REPORT_SUFFIX}")
    return loaded + computed


def is_report(path: Path) -> bool:
    """A drift report, or a folder of them; anything else is a data file to check."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    return path.is_dir() or path.name.endswith(REPORT_SUFFIX)
