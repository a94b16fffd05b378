"""Stage 1, ingest: data files -> the Parquet store.

In: day files of a dataset (`schemas.datasets.DatasetSpec`), plain or gzip, local or on a Dask
cluster. Out: one partition per day in the store (`store.py`: versioned, committed atomically),
its quarantine and out-of-scope rows, and an `IngestReport` per file (`report.py`).

Invariants: every source row ends up exactly once in the partition's data, its quarantine (with
file, line, columns and reason) or its out-of-scope rows; a file that fails its scan writes
nothing; a killed writer leaves whole versions, and the next writer recovers the rest.

Read first: `files.py` (the driver), then scan -> lines -> parse -> write, then `store.py`.
"""
