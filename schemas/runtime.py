"""Names of the environment variables nad-fusion reads."""

from typing import Final

DASK_ADDRESS_ENV: Final[str] = "NAD_DASK_ADDRESS"
# Where Dask workers that nad starts, and nad itself once a stop signal came, write their stderr
# (tracebacks and shutdown noise); unset (--debug): the terminal.
QUIET_LOG_ENV: Final[str] = "NAD_QUIET_LOG"
