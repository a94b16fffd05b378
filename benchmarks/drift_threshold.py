"""Where to put the drift threshold: per-input PSI (and Jensen-Shannon distance, to compare) of
the demo test days and of one deliberately shifted day, against the reference profile of the
default preset's preprocessing fitted on the demo training days. No nets: this measures the
inputs only (the class mix needs a model; see docs/drift.md).

    .venv/bin/python benchmarks/drift_threshold.py --preset demo --work /tmp/drift-demo

Prints, per day, the largest PSI and JS, and the inputs over the threshold; then the gap between
the largest value of a normal test day and the largest of the shifted day, for each measure.
"""

import argparse
import shutil
from pathlib import Path

import numpy as np
from scipy.spatial.distance import jensenshannon

from schemas.datasets import ZYELL
from schemas.generation import get_preset
from schemas.training import SplitConfig, TrainConfig
from simulator.generate import generate_dataset, write_shifted_day
from tasks.cluster import dask_client
from tasks.ingest.files import ingest_files
from tasks.model.drift import PSI_THRESHOLD, InputCounter, psi, shares
from tasks.model.preprocess import fit_preprocessing, with_reference
from tasks.monitoring.drift_days import data_file_inputs
from tasks.training.split import split_store

SEED = 7


def reference_prep(data: Path, work: Path, train_files: list[str], feature_set: str | None):
    config = TrainConfig.from_file(None, "default", feature_set).for_dataset(ZYELL)
    with dask_client() as client:
        store = work / "store"
        list(ingest_files([data / name for name in train_files], store, client))
        split = split_store(store, None, SplitConfig(), work / "splits", client, ZYELL, config.feature_set)
        prep = fit_preprocessing(
            split.files("train"), config.clip, client, ZYELL, config.log_transform, config.feature_set
        )
    return with_reference(prep, split.files("train"))


def day_measures(path: Path, prep, work: Path) -> tuple[dict[str, float], dict[str, float]]:
    counter = InputCounter(prep.reference)
    shutil.rmtree(work / "tables", ignore_errors=True)
    for inputs in data_file_inputs(path, prep, work / "tables"):
        counter.add(inputs)
    pairs = zip(prep.reference.inputs, prep.reference.counts, counter.counts, strict=True)
    values = [
        (name, psi(ref, cur), float(jensenshannon(shares(ref), shares(cur), base=2)))
        for name, ref, cur in pairs
    ]
    return {n: p for n, p, _ in values}, {n: j for n, _, j in values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo", choices=["tiny", "demo"])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument(
        "--feature-set", choices=["paper", "context"], default=None, help="default: the preset's"
    )
    args = parser.parse_args()
    data = args.work / "data"
    preset = get_preset(args.preset)
    days = generate_dataset(preset, SEED, data)
    shifted = write_shifted_day(preset, SEED, data)
    prep = reference_prep(data, args.work, [d.file for d in days if d.split == "train"], args.feature_set)
    tests = [d.file for d in days if d.split == "test"] + [shifted.file]
    largest = {}
    for name in tests:
        by_psi, by_js = day_measures(data / name, prep, args.work)
        top = sorted(by_psi, key=lambda k: -by_psi[k])[:3]
        over = [k for k in by_psi if by_psi[k] > PSI_THRESHOLD]
        largest[name] = (max(by_psi.values()), max(by_js.values()), len(over) / len(by_psi))
        print(
            f"{name}: max PSI {largest[name][0]:.3f}  max JS {largest[name][1]:.3f}  top "
            + ", ".join(f"{k} {by_psi[k]:.3f}" for k in top)
            + f"  over {PSI_THRESHOLD}: {len(over)} of {len(by_psi)} inputs {over or ''}"
        )
    normal = [largest[name] for name in tests[:-1]]
    for index, measure in enumerate(("max PSI", "max JS", f"share of inputs over PSI {PSI_THRESHOLD}")):
        worst_normal = max(values[index] for values in normal)
        shifted_value = largest[tests[-1]][index]
        print(
            f"{measure}: largest on a normal test day {worst_normal:.3f}, on the shifted day "
            f"{shifted_value:.3f}, ratio {shifted_value / worst_normal:.1f}x, "
            f"geometric middle {np.sqrt(worst_normal * shifted_value):.3f}"
        )


if __name__ == "__main__":
    main()
