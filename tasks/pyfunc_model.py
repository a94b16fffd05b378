"""The fused model as an MLflow pyfunc, defined as code ("models from code"): nothing is pickled.

MLflow loads this file, which declares the model with `set_model`; `load_context` then loads the
saved predictor folder (native .keras files and JSON, Keras safe_mode on).
"""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class NadFusionModel(PythonModel):
    """Raw rows (the dataset's unlabelled columns, as in the signature) in, class names out."""

    def load_context(self, context) -> None:
        from tasks.fusion import load_predictor

        self.predictor = load_predictor(context.artifacts["predictor"])

    def predict(self, context, model_input, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return pd.Series(self.predictor.predict(frame), name="pred_label").astype(str)


mlflow.models.set_model(NadFusionModel())
