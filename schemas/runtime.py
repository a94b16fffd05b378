"""Names of the environment variables nad-fusion reads."""

from typing import Final

DASK_ADDRESS_ENV: Final[str] = "NAD_DASK_ADDRESS"
