"""Progress of long steps: one line now and then on a terminal, nothing when output is not a
terminal (`tasks.progress`), as ingest, training and scoring use it."""

import io

import pytest

from tasks.progress import Progress, format_duration, progress_line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_progress_line_has_rows_rate_and_time_left() -> None:
    line = progress_line("ingest 1203_firewall.csv", 2_400_000, 5_600_000, elapsed_s=6.0)
    assert line == "ingest 1203_firewall.csv: 2,400,000/5,600,000 rows, 400,000 rows/s, 8 s left"


def test_a_progress_line_says_only_what_is_known() -> None:
    assert progress_line("score a.csv", 0, 1000, elapsed_s=0.0) == "score a.csv: 0/1,000 rows"
    assert progress_line("x", 500, None, elapsed_s=2.0) == "x: 500 rows, 250 rows/s"
    assert progress_line("x", 1000, 1000, elapsed_s=2.0) == "x: 1,000/1,000 rows, 500 rows/s"


@pytest.mark.parametrize(
    ("seconds", "words"), [(0.4, "0 s"), (8.4, "8 s"), (200, "3 min 20 s"), (7500, "2 h 05 min")]
)
def test_durations_read_as_words(seconds: float, words: str) -> None:
    assert format_duration(seconds) == words


def run_steps(stream: io.StringIO, clock: Clock, steps: int = 12, seconds_each: float = 1.0) -> Progress:
    progress = Progress("ingest day.csv", 12_000, stream=stream, every_s=5.0, clock=clock)
    for _ in range(steps):
        clock.now += seconds_each
        progress.advance(1000)
    progress.finish()
    return progress


def test_on_a_terminal_at_most_one_line_every_few_seconds_and_a_last_one() -> None:
    terminal = Terminal()
    run_steps(terminal, Clock())
    lines = terminal.getvalue().splitlines()
    assert lines == [
        "ingest day.csv: 5,000/12,000 rows, 1,000 rows/s, 7 s left",
        "ingest day.csv: 10,000/12,000 rows, 1,000 rows/s, 2 s left",
        "ingest day.csv: 12,000/12,000 rows, 1,000 rows/s",
    ]


def test_quiet_when_output_is_not_a_terminal() -> None:
    pipe = io.StringIO()
    progress = run_steps(pipe, Clock())
    assert pipe.getvalue() == ""
    assert progress.done == 12_000


def test_a_quick_step_prints_nothing_even_on_a_terminal() -> None:
    terminal = Terminal()
    run_steps(terminal, Clock(), steps=3, seconds_each=1.0)
    assert terminal.getvalue() == ""


def test_training_counts_every_row_of_every_epoch_it_runs() -> None:
    from tasks.training.train import RowProgress, Schedule

    rows, batch = 10_000, 4096  # three batches an epoch, the last one short
    callback = RowProgress(
        "binary", rows, Schedule(batch_size=batch, epochs=2, steps_per_epoch=3, first_stop_epoch=1)
    )
    terminal, clock = Terminal(), Clock()
    callback.progress = Progress("train binary", rows * 2, stream=terminal, every_s=5.0, clock=clock)
    for epoch in range(2):
        clock.now += 6.0
        callback.on_epoch_end(epoch)
    callback.on_train_end()
    assert callback.progress.done == 2 * rows
    assert terminal.getvalue().splitlines()[-1] == "train binary epoch 2/2: 20,000/20,000 rows, 1,667 rows/s"


@pytest.mark.slow
def test_inside_a_flow_run_the_figures_go_to_a_progress_artifact(prefect_harness) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client

    @flow
    def counting() -> str:
        progress = Progress("ingest day.csv", 4000, stream=io.StringIO(), every_s=0.0)
        for _ in range(4):
            progress.advance(1000)
        return str(progress.artifact.id)

    artifact_id = counting()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    shown = next(a for a in artifacts if str(a.id) == artifact_id)
    assert shown.type == "progress"
    assert float(shown.data) == 100.0
    assert shown.description.startswith("ingest day.csv: 4,000/4,000 rows")
