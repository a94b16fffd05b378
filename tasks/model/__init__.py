"""Stage 2, model: what a fitted model is made of, and how it turns rows into classes.

In: parsed rows (from ingest's parser or the store). Out: context features (`context.py`), the
fitted preprocessing artifact with its drift reference profile (`preprocess.py`, `drift.py`), and
the fused predictor, binary net then attack net, run as NumPy (`fusion.py`).

Invariants: training fits these pieces and scoring, serving and monitoring load them, so this
stage imports neither; a predictor folder holds everything needed to score (no pickles; Keras
files load with safe_mode); the same rows get the same inputs at training and at scoring time.

Read first: `fusion.py` (`load_predictor`, `Predictor.predict_codes`), then `preprocess.py`.
"""
