"""Which model a command means: a folder (a predictor, a run, the `--out` of `nad train`), a saved
MLflow model, or an MLflow model URI (downloaded), resolved once to a local predictor folder.
"""

import re
from pathlib import Path

from schemas.datasets import DatasetSpec
from tasks.errors import ModelError
from tasks.model.fusion import PREDICTOR_FILE, load_predictor, load_preprocessing
from tasks.registry.mlflow_setup import CHAMPION, configure_mlflow

MLMODEL_FILE = "MLmodel"
MODEL_FORMS = (
    "a predictor folder (with predictor.json), a run folder, the --out folder of nad train, "
    "or an MLflow model URI (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/model)"
)


def champion_uri(spec: DatasetSpec) -> str:
    """The default model of a dataset: its registered model's champion."""
    return f"models:/{spec.model_name}@{CHAMPION}"


def is_model_uri(model: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*:/", model) is not None


def predictor_folder(model: str) -> Path:
    """The local predictor folder that `model` names: a predictor folder itself, a run folder
    (its `fusion/`), the `--out` folder of `nad train` (its `runs/latest/fusion/`), a saved
    MLflow model, or an MLflow model URI (downloaded)."""
    if is_model_uri(model):
        return download_predictor(model)
    path = Path(model)
    if not path.exists():
        raise ModelError(f"{model}: no such folder, and not a model URI; give {MODEL_FORMS}")
    if not path.is_dir():
        raise ModelError(f"{model}: a file, not a model; give {MODEL_FORMS}")
    for folder in (path, path / "fusion", path / "runs" / "latest" / "fusion"):
        if (folder / PREDICTOR_FILE).is_file():
            return folder
    if (path / MLMODEL_FILE).is_file():
        return pyfunc_predictor(path)
    raise ModelError(f"{model}: holds no model; give {MODEL_FORMS}")


def download_predictor(uri: str) -> Path:
    import mlflow

    configure_mlflow()
    try:
        return pyfunc_predictor(Path(mlflow.artifacts.download_artifacts(artifact_uri=uri)))
    except mlflow.exceptions.MlflowException as error:
        raise ModelError(f"{uri}: {error.message.splitlines()[0]}") from error


def pyfunc_predictor(local: Path) -> Path:
    """The predictor folder inside a saved pyfunc model (see tasks/registry/pyfunc_model.py)."""
    import mlflow

    if not (local / MLMODEL_FILE).is_file():
        raise ModelError(f"{local}: no {MLMODEL_FILE}; not a model logged by nad train")
    flavor = mlflow.models.Model.load(local / MLMODEL_FILE).flavors.get("python_function", {})
    predictor = flavor.get("artifacts", {}).get("predictor", {}).get("path")
    if predictor is None:
        raise ModelError(f"{local}: an MLflow model without a nad predictor")
    return local / predictor


def check_model_dataset(folder: Path, spec: DatasetSpec, model: str) -> None:
    """Refuse a model trained on another dataset than the files to score."""
    trained_on = load_preprocessing(folder).dataset
    if trained_on != spec.name:
        raise ModelError(
            f"{model} was trained on {trained_on}, not {spec.name}; "
            f"score with --dataset {trained_on} or another --model"
        )


def resolve_predictor(model: str):
    """The predictor that `model` names (see `predictor_folder`), loaded."""
    return load_predictor(predictor_folder(model))
