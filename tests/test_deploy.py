"""prefect.yaml for real: a `prefect server`, `prefect deploy --all`, a process worker, one backfill run."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.ingest.store import read_report, stored_parts
from tests.helpers import free_port, wait_for_http

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture
def prefect_server(tmp_path: Path):
    """A real `prefect server start` on 127.0.0.1 with its own home, and the env to reach it."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": str(REPO),
        "NAD_REPO": str(REPO),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("PREFECT_PROFILES_PATH", None)
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/health", server)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def prefect(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "prefect"), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_backfill_deployment_runs_on_a_process_worker(
    prefect_server: dict, tiny_dir: Path, tiny_days, tmp_path: Path
):
    env = prefect_server
    source, store = tmp_path / "incoming", tmp_path / "store"
    source.mkdir()
    for name in ("1203_firewall.csv", "1210_firewall.csv"):
        shutil.copy(tiny_dir / name, source / name)
    created = prefect(env, "work-pool", "create", "nad-process", "--type", "process")
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = prefect(env, "--no-prompt", "deploy", "--all")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    worker_log = open(tmp_path / "worker.log", "w")  # noqa: SIM115
    worker = subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", "nad-process"],
        env=env, cwd=tmp_path, stdout=worker_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        params = json.dumps({"source": str(source), "store": str(store)})
        run = prefect(
            env,
            "deployment",
            "run",
            "backfill/backfill",
            "--params",
            params,
            "--watch",
            "--watch-timeout",
            "300",
        )
        assert run.returncode == 0, run.stdout + run.stderr + (tmp_path / "worker.log").read_text()[-4000:]
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
        worker_log.close()
    assert stored_parts(store) == ["day=2020-12-03", "day=2020-12-10"]
    assert all(read_report(store, part).rows_read > 0 for part in stored_parts(store))
