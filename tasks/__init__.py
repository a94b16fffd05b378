"""The pipeline's steps: plain typed functions, each with a thin Prefect task beside it.

One package per stage, in pipeline order; a stage imports only the stages above it in this list
(tests/test_layout.py), and scoring and monitoring never load training code:

    ingest/      day files -> the Parquet store (validated, quarantined, versioned)
    model/       what a fitted model is: context features, preprocessing, drift profile, fused nets
    training/    the store -> a split, three trained nets, a threshold, evaluations
    registry/    MLflow: the store's setup, the training run, the champion gate, the served model
    scoring/     day files + a model -> predictions files, votes, incidents, metrics
    monitoring/  predictions and the store -> drift reports, heatmaps, MLflow drift runs

Shared leaves, imported by any stage: `errors` (one-line errors), `progress` (progress lines),
`metrics` (the confusion matrix and every figure drawn from it), `cluster` (Dask clients).
"""
