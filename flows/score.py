"""Scoring flow: score data files with a registered or saved model, one task per file."""

from pathlib import Path

from prefect import flow

from tasks.score import score_file_task


@flow(name="score-days")
def score_days(
    files: list[Path],
    model: str = "models:/nad-fusion@champion",
    out: Path = Path("scores"),
    truth: Path | None = None,
) -> list[dict]:
    """Validate and score each file; with a truth folder, also the metrics."""
    futures = [
        score_file_task.submit(Path(f), model, Path(out), Path(truth) / Path(f).name if truth else None)
        for f in files
    ]
    return [future.result() for future in futures]
