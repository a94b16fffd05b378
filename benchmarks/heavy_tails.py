"""Which numeric features are heavy-tailed enough for `log1p` before the scaler.

For every non-categorical feature of a store's labelled rows it prints the skewness and the
"used range": the share of the scaled, clipped (±clip) range that the central 98% of rows
occupy (p1..p99). A heavy-tailed column puts almost every row in a sliver of its range, so the
nets see nearly a constant; `log1p` spreads them out. The same figures after `log1p` are beside.

    python benchmarks/heavy_tails.py --store STORE [--dataset zyell|nsl-kdd] [--clip 50]
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def used_range(values: np.ndarray, clip: float) -> float:
    """Share of the scaled, clipped range occupied by the central 98% of rows."""
    std = values.std()
    if std == 0:
        return 1.0
    scaled = np.clip((values - values.mean()) / std, -clip, clip)
    span = scaled.max() - scaled.min()
    return float((np.quantile(scaled, 0.99) - np.quantile(scaled, 0.01)) / span) if span else 1.0


def describe(values: np.ndarray, clip: float) -> tuple[float, float]:
    return float(pd.Series(values).skew()), used_range(values, clip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--dataset", default="zyell")
    parser.add_argument("--clip", type=float, default=50.0)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from schemas.datasets import get_dataset
    from tasks.ingest.store import part_dir, stored_parts

    spec = get_dataset(args.dataset)
    numeric = [c for c in spec.feature_columns if c not in spec.categorical_names]
    frames = [
        pd.read_parquet(part_dir(args.store, part), columns=numeric) for part in stored_parts(args.store)
    ]
    rows = pd.concat(frames, ignore_index=True).astype("float64")
    print(f"{len(rows):,} rows of {args.store} ({spec.name}); clip ±{args.clip:g}\n")
    print("| column | min | skew | used range | skew after log1p | used range after | log1p in spec |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for column in numeric:
        values = rows[column].to_numpy()
        skew, used = describe(values, args.clip)
        logged = describe(np.log1p(np.maximum(values, 0)), args.clip)
        chosen = "yes" if column in spec.log_columns else ""
        cells = [f"{values.min():g}", f"{skew:.1f}", f"{used:.3f}", f"{logged[0]:.1f}", f"{logged[1]:.3f}"]
        print(f"| {column} | " + " | ".join(cells) + f" | {chosen} |")


if __name__ == "__main__":
    main()
