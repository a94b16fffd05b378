"""Stage 5, scoring: day files + a model -> predictions, votes, incidents, metrics.

In: data files, a predictor folder (`tasks.registry.champion`), optionally truth files and a
Dask cluster. Out, per file, beside each other: `STEM.predictions.parquet` (format and readers in
`predictions.py`), quarantine and out-of-scope rows, incidents (`incidents.py`), a drift report
and `STEM.summary.json`; with labels, an MLflow evaluation run.

Invariants: rows read = kept + quarantined + out of scope; every output is written to a temporary
file and renamed; a block is scored the same in this process or on a worker (`blocks.py`);
scoring never imports training.

Read first: `score.py` (`score_file`), then `blocks.py`, `predictions.py`, `voting.py`.
"""
