"""Model processes of a multi-model instance: a hung worker is replaced at the invocation budget, a
model that dies is loaded again, and SIGTERM leaves no model process behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.serving.multimodel_support import StartMultiModel, counting_model, eventually, pid_gone


def test_a_model_that_does_not_answer_in_time_has_its_worker_replaced(
    start_multimodel: StartMultiModel,
) -> None:
    """The hung worker is killed and a fresh one forked from the loaded model: the model stays loaded."""
    mme = start_multimodel(
        lambda models: counting_model(models, "hang.tar.gz", "hang"),
        MOORAGE_MME_INVOCATION_TIMEOUT_SECONDS="2",
    )
    assert mme.invoke("hang.tar.gz").status == 200
    main, worker = mme.describe("hang.tar.gz")["pids"]
    timed_out = mme.invoke("hang.tar.gz", {"sleep": 30})
    assert timed_out.status == 504 and timed_out.headers["x-moorage-error"] == "ModelTimeout"
    assert "'hang.tar.gz'" in timed_out.text and "2 s" in timed_out.text
    eventually(lambda: pid_gone(worker))
    assert not pid_gone(main)
    assert mme.loaded() == ["hang.tar.gz"]
    again = mme.invoke("hang.tar.gz")
    assert again.status == 200 and again.headers["x-moorage-model-cache"] == "hit", again.text
    assert again.json()["pid"] != worker
    assert mme.load_count("hang") == 1


def test_a_model_process_that_dies_is_reported_and_loaded_again(start_multimodel: StartMultiModel) -> None:
    mme = start_multimodel(lambda models: counting_model(models, "crash.tar.gz", "crash"))
    assert mme.invoke("crash.tar.gz").status == 200
    lost = mme.invoke("crash.tar.gz", {"exit": True})  # the worker exits mid-request
    assert lost.status == 502 and lost.headers["x-moorage-error"] == "ModelLost"
    assert "'crash.tar.gz'" in lost.text

    eventually(lambda: mme.invoke("crash.tar.gz").status == 200)  # its worker was replaced
    os.kill(mme.describe("crash.tar.gz")["pids"][0], signal.SIGKILL)  # now the whole model instance goes
    eventually(lambda: mme.loaded() == [])
    again = mme.invoke("crash.tar.gz")
    assert again.status == 200 and again.headers["x-moorage-model-cache"] == "miss"


def test_sigterm_stops_every_model_process(start_multimodel: StartMultiModel) -> None:
    def build(models: Path) -> None:
        counting_model(models, "s1.tar.gz", "s1")
        counting_model(models, "s2.tar.gz", "s2")

    mme = start_multimodel(build, MOORAGE_MME_MODEL_WORKERS="2")
    assert mme.invoke("s1.tar.gz").status == 200
    assert mme.invoke("s2.tar.gz").status == 200
    pids = mme.describe("s1.tar.gz")["pids"] + mme.describe("s2.tar.gz")["pids"]
    assert len(pids) == 6  # each model: its main and two workers
    mme.instance.process.send_signal(signal.SIGTERM)
    assert mme.instance.wait_exit() == 0, mme.output()
    eventually(lambda: all(pid_gone(pid) for pid in pids))


def test_model_processes_die_with_a_killed_instance(start_multimodel: StartMultiModel) -> None:
    mme = start_multimodel(lambda models: counting_model(models, "k.tar.gz", "k"))
    assert mme.invoke("k.tar.gz").status == 200
    pids = mme.describe("k.tar.gz")["pids"]
    mme.instance.process.kill()  # no chance to stop anything itself
    mme.instance.wait_exit()
    eventually(lambda: all(pid_gone(pid) for pid in pids))


def test_a_run_directory_left_by_a_killed_instance_is_removed_by_the_next(tmp_path: Path) -> None:
    import subprocess
    import sys

    from moorage.serving.multimodel.manager import _remove_stale_run_dirs

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead = tmp_path / f"moorage-mme-{int(ended.stdout)}-x1"
    mine = tmp_path / f"moorage-mme-{os.getpid()}-x2"
    other = tmp_path / "moorage-mme-not-a-pid"
    for path in (dead, mine, other):
        path.mkdir()
    _remove_stale_run_dirs(tmp_path)
    assert not dead.exists() and mine.exists() and other.exists()
