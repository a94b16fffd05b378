"""Stage 6, monitoring: how far the days a model meets have drifted from its training period.

In: drift reports written beside predictions by scoring, or store partitions scored anew
(`drift_days.py`). Out: drift reports, a heatmap, a Prefect table and an MLflow run
(`drift_publish.py`).

Invariants: the reference profile travels with the model (`tasks.model.drift`); a day is compared
bin by bin on the model's own input columns.

Read first: `tasks/model/drift.py` (the report), then `drift_days.py`.
"""
