"""Stage 3, training: the store -> a split, trained nets, a tuned threshold, evaluations.

In: store partitions (ingest) and a `schemas.training.TrainConfig`. Out: the split's Parquet files
and manifest (`split.py`), the binary, attack and baseline nets (`train.py`), the fusion threshold
(`threshold.py`), per-split evaluations (`evaluate.py`), all summed up in a `TrainingSummary`
(`summary.py`) that the registry logs.

Invariants: the split depends only on the seed, the rows and the config, and its manifest tells
for any stored row which split it was in (the gate relies on it); with `group: clock` a clock
block's rows move together; training data streams from Parquet, never whole in memory.

Read first: `flows/train.py` (the order), then `split.py` and `train.py`.
"""
