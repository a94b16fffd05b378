"""Stage 4, registry: MLflow, from the training run to the served champion.

In: a `TrainingSummary` and the store. Out: an MLflow run with params, metrics, artifacts and
dataset inputs (`tracking.py`, `run_datasets.py`), a registered model version, the champion alias
moved only when the gate passes (`gate.py`), and the served model (`pyfunc_model.py`, logged as
"models from code"; `serving.py`, `serve_app.py` for `nad serve`).

Invariants: `mlflow_setup.py` is the one reader of `MLFLOW_TRACKING_URI` and the one place that
points MLflow at the store; `champion.py` resolves any model reference to a local predictor
folder; nothing touches MLflow at import time.

Read first: `mlflow_setup.py`, `champion.py`, then `tracking.py` (`track_and_register_task`).
"""
