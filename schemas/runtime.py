"""Names of the environment variables nad-fusion reads; each is read only where its comment says."""

from typing import Final

# The Dask scheduler to use when no --dask-address is given (tasks/cluster.py).
DASK_ADDRESS_ENV: Final[str] = "NAD_DASK_ADDRESS"
# Where Dask workers that nad starts, and nad itself once a stop signal came, write their stderr
# (tracebacks and shutdown noise); unset (--debug): the terminal.
QUIET_LOG_ENV: Final[str] = "NAD_QUIET_LOG"
# The most rows of one request to a served model; read by the model when the server loads it.
MAX_REQUEST_ROWS_ENV: Final[str] = "NAD_MAX_REQUEST_ROWS"
# The MLflow store; unset: SQLite mlflow.db in the working directory (tasks/registry/mlflow_setup.py).
MLFLOW_TRACKING_URI_ENV: Final[str] = "MLFLOW_TRACKING_URI"
