"""The ZYELL-format traffic simulator behind `nad generate`: writes day files, depends only on `schemas`.

No pipeline module (tasks/, flows/, schemas/) imports it; ruff's TID251 and tests/test_layout.py
enforce that. The model is described in `simulator/TRAFFIC_MODEL.md`.
"""
