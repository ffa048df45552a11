"""Defects found reviewing the multi-model instance: each test names what a user or operator hits."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from tests.serving.multimodel_support import (
    MultiModelInstance,
    StartMultiModel,
    counting_model,
    eventually,
    pid_gone,
)


def test_load_time_does_not_eat_the_invocation_budget_and_kill_the_new_model(
    start_multimodel: StartMultiModel,
) -> None:
    """A model whose model_fn takes most of the invocation timeout is not hung: its first request must
    get the model's answer, and the model must stay loaded. The deadline is taken before the load, so
    the forward is left with the remainder, times out, and the freshly loaded model is killed — every
    cold request does the same, so such a model is never served."""
    mme = start_multimodel(
        lambda models: counting_model(models, "big.tar.gz", "big", sleep=2.5),
        MOORAGE_MME_INVOCATION_TIMEOUT_SECONDS="3",
    )
    first = mme.invoke("big.tar.gz", {"sleep": 1})
    assert first.status == 200, (first.status, first.headers.get("x-moorage-error"), first.text)
    assert mme.loaded() == ["big.tar.gz"]
    assert mme.load_count("big") == 1


def test_caching_disabled_reports_no_loaded_models(start_multimodel: StartMultiModel) -> None:
    """With ModelCacheSetting Disabled nothing stays loaded, yet every answer reports
    x-moorage-loaded-models: 1 (the count is taken before the background discard runs), so the
    front door's LoadedModelCount for the instance stays at 1 forever."""
    mme = start_multimodel(
        lambda models: counting_model(models, "once.tar.gz", "once"), MOORAGE_MME_CACHING="Disabled"
    )
    reply = mme.invoke("once.tar.gz")
    assert reply.status == 200
    eventually(lambda: mme.loaded() == [])
    assert reply.headers["x-moorage-loaded-models"] == "0"


def test_a_timed_out_invocation_does_not_kill_the_models_other_requests(
    start_multimodel: StartMultiModel,
) -> None:
    """One hung invocation is stopped at the budget (docs: "the instance stops that invocation itself"),
    but the whole model is killed, so another request on the same model that is well inside its own
    budget fails with ModelLost."""
    mme = start_multimodel(
        lambda models: counting_model(models, "shared.tar.gz", "shared"),
        MOORAGE_MME_INVOCATION_TIMEOUT_SECONDS="4",
        MOORAGE_MME_MODEL_WORKERS="2",
    )
    assert mme.invoke("shared.tar.gz").status == 200
    replies: dict[str, object] = {}

    def hung() -> None:
        replies["hung"] = mme.invoke("shared.tar.gz", {"sleep": 30})

    thread = threading.Thread(target=hung)
    thread.start()
    eventually(lambda: mme.describe("shared.tar.gz")["inFlight"] == 1)
    time.sleep(1.5)  # the hung request is past a second of its 4 s; this one needs 3 s of its own 4 s
    quick = mme.invoke("shared.tar.gz", {"sleep": 3})
    thread.join()
    assert quick.status == 200, (quick.status, quick.headers.get("x-moorage-error"), quick.text)


def test_dot_target_does_not_load_the_prefix_itself(start_multimodel: StartMultiModel) -> None:
    """TargetModel "." (or "x/.") resolves to the prefix directory itself, which passes the "stays under
    the prefix" check (path == root is allowed) and is then used in place as a model directory: the
    whole prefix is exposed as one model's files instead of a ValidationError naming the target."""

    def build(models: Path) -> None:
        counting_model(models, "a.tar.gz", "a")

    mme = start_multimodel(build)
    for target in (".", "./"):
        reply = mme.invoke(target)
        assert reply.status == 400, (target, reply.status, reply.headers.get("x-moorage-error"), reply.text)
        assert reply.headers["x-moorage-error"] == "InvalidTargetModel"
    assert mme.loaded() == []


def test_caching_disabled_does_not_keep_a_model_whose_requests_gave_up(
    start_multimodel: StartMultiModel,
) -> None:
    """ModelCacheSetting Disabled: a load that outlasted its request (ModelNotReady) finishes with no
    request to release it, so the model stays loaded (and counted, and on disk) until some later
    request happens to use it — possibly never."""
    mme = start_multimodel(
        lambda models: counting_model(models, "late.tar.gz", "late", sleep=2),
        MOORAGE_MME_CACHING="Disabled",
        MOORAGE_MME_READY_WAIT_SECONDS="0.5",
    )
    early = mme.invoke("late.tar.gz")
    assert early.status == 429 and early.headers["x-moorage-error"] == "ModelNotReady"
    eventually(lambda: mme.load_count("late") == 1)
    time.sleep(4)  # the load (2 s) is over and nobody uses the model
    assert mme.loaded() == []


PID_INFERENCE = """
import os, time

def model_fn(model_dir):
    with open(os.path.join(os.environ["MME_LOADS"], "loading.pid"), "w") as out:
        out.write(str(os.getpid()))
    time.sleep(60)
    return "never"

def transform_fn(model, body, content_type, accept, context=None):
    return b"{}", "application/json"
"""


def _loading(start_multimodel: StartMultiModel) -> tuple[MultiModelInstance, int]:
    """An instance whose model (slow.tar.gz) is still in model_fn, and the pid of that model's process."""
    from tests.support.models import build_model_tar

    mme = start_multimodel(
        lambda models: build_model_tar(models / "slow.tar.gz", PID_INFERENCE),
        MOORAGE_MME_READY_WAIT_SECONDS="0.5",
    )
    assert mme.invoke("slow.tar.gz").status == 429
    pid_file = mme.loads / "loading.pid"
    eventually(lambda: pid_file.exists() and pid_file.read_text() != "")
    return mme, int(pid_file.read_text())


def test_sigterm_during_a_load_leaves_no_model_process(start_multimodel: StartMultiModel) -> None:
    """SIGTERM while a model's model_fn is still running: the instance must not leave that model's
    process behind (an orphan holding the model's memory)."""
    mme, pid = _loading(start_multimodel)
    mme.instance.process.send_signal(signal.SIGTERM)
    mme.instance.wait_exit()
    eventually(lambda: pid_gone(pid), timeout=15)


def _cached_names(cache: Path) -> set[str]:
    """The models unpacked in the instance's disk cache, by the name each was built with."""
    root = cache / "models"
    return {
        (entry / "name.txt").read_text().strip()
        for entry in root.iterdir()
        if entry.is_dir() and (entry / "name.txt").exists()
    }


def test_disk_pruning_deletes_the_least_recently_used_not_the_first_loaded(
    start_multimodel: StartMultiModel,
) -> None:
    """Docs: past MOORAGE_MME_DISK_BYTES "the least recently used models that are not loaded are
    deleted". Pruning orders by the model directory's mtime, which is set when the model is unpacked or
    prepared (loaded), never when it answers; so a model loaded first but used all along is deleted
    before one loaded later and not used since."""
    from moorage.artifacts.multimodel import _size

    sizing = start_multimodel(lambda models: counting_model(models, "x.tar.gz", "x"))
    assert sizing.invoke("x.tar.gz").status == 200
    one = max(_size(entry) for entry in (sizing.cache / "models").iterdir() if entry.is_dir())
    sizing.stop()

    def build(models: Path) -> None:
        for name in ("used", "stale", "new"):
            counting_model(models, f"{name}.tar.gz", name)

    mme = start_multimodel(build, MOORAGE_MME_DISK_BYTES=str(2 * one + one // 2))
    assert mme.invoke("used.tar.gz").status == 200
    time.sleep(0.2)  # distinct directory times
    assert mme.invoke("stale.tar.gz").status == 200
    time.sleep(0.2)
    for _ in range(3):
        assert mme.invoke("used.tar.gz").headers["x-moorage-model-cache"] == "hit"
    assert mme.call("DELETE", "/models/stale.tar.gz").status == 200
    assert mme.call("DELETE", "/models/used.tar.gz").status == 200
    assert _cached_names(mme.cache) == {"used", "stale"}
    assert mme.invoke("new.tar.gz").status == 200
    eventually(lambda: len(_cached_names(mme.cache)) == 2)
    assert _cached_names(mme.cache) == {"used", "new"}


def test_a_killed_instance_leaves_no_model_process_that_was_still_loading(
    start_multimodel: StartMultiModel,
) -> None:
    """The instance is killed outright (the fleet replacing it) while a model's model_fn runs: that
    model's process must not outlive it."""
    mme, pid = _loading(start_multimodel)
    mme.instance.process.kill()
    mme.instance.wait_exit()
    eventually(lambda: pid_gone(pid), timeout=15)


def test_a_target_with_a_name_too_long_for_the_filesystem_is_refused(
    start_multimodel: StartMultiModel,
) -> None:
    """A TargetModel under the 1024-byte limit may still have a segment longer than a file name can be
    (255 bytes). On a file:// prefix, Path.exists raises OSError(ENAMETOOLONG), which nothing turns into
    a marked answer: the request must still get a marked ModelNotFound/InvalidTargetModel, and the
    instance must keep answering."""
    mme = start_multimodel(lambda models: counting_model(models, "a.tar.gz", "a"))
    reply = mme.invoke("x" * 300 + ".tar.gz")
    assert reply.headers.get("x-moorage-error") in ("ModelNotFound", "InvalidTargetModel"), (
        reply.status,
        reply.headers,
        reply.text,
    )
    assert reply.status in (400, 404)
    assert mme.invoke("a.tar.gz").status == 200


MB = 1024 * 1024


def test_a_model_known_to_exceed_the_budget_does_not_flush_the_cache(
    start_multimodel: StartMultiModel,
) -> None:
    """Once a model has been measured larger than the whole budget, every later request for it makes
    room for its remembered cost first (cache.py `_estimate` -> `_make_room`), which unloads every idle
    model on the instance, then loads it and refuses it again (507). One caller retrying an oversized
    TargetModel keeps emptying the cache for everyone; the known-too-big model should be refused
    without evicting anything."""

    def build(models: Path) -> None:
        for name in ("m1", "m2"):
            counting_model(models, f"{name}.tar.gz", name, size=50 * MB)
        counting_model(models, "huge.tar.gz", "huge", size=170 * MB)

    mme = start_multimodel(build, MOORAGE_MME_MEMORY_BYTES=str(160 * MB))
    assert mme.invoke("huge.tar.gz").status == 507  # measured once: now known to be too big
    assert mme.invoke("m1.tar.gz").status == 200
    assert mme.invoke("m2.tar.gz").status == 200
    assert mme.loaded() == ["m1.tar.gz", "m2.tar.gz"]
    again = mme.invoke("huge.tar.gz")
    assert again.status == 507 and again.headers["x-moorage-error"] == "InsufficientMemory"
    assert mme.loaded() == ["m1.tar.gz", "m2.tar.gz"]
    assert mme.load_count("m1") == 1 and mme.load_count("m2") == 1


SPAWNING_INFERENCE = """
import os, subprocess, sys, time

HOLD = (
    "import os, time; b = bytearray(os.urandom(1)) * (90 * 1024 * 1024); "
    "print(os.getpid(), flush=True); time.sleep(600)"
)

def model_fn(model_dir):
    helper = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE)
    pid = int(helper.stdout.readline())
    with open(os.path.join(os.environ["MME_LOADS"], "helper.pid"), "w") as out:
        out.write(str(pid))
    return helper

def transform_fn(model, body, content_type, accept, context=None):
    return b"{}", "application/json"
"""


def test_memory_of_a_models_child_processes_counts_against_the_budget(
    start_multimodel: StartMultiModel,
) -> None:
    """A model whose model_fn starts helper processes (a tokenizer server, a multiprocessing pool) uses
    their memory too, but a model's cost is the PSS of only the pids in its instance.json (memory.py
    `instance_pids`), so 90 MB held by its helper is invisible to eviction and the budget is overrun."""
    from tests.support.models import build_model_tar

    mme = start_multimodel(lambda models: build_model_tar(models / "spawn.tar.gz", SPAWNING_INFERENCE))
    assert mme.invoke("spawn.tar.gz").status == 200
    helper = int((mme.loads / "helper.pid").read_text())
    try:
        assert mme.describe("spawn.tar.gz")["memoryBytes"] > 90 * MB
    finally:
        assert mme.call("DELETE", "/models/spawn.tar.gz").status == 200
        eventually(lambda: pid_gone(helper))  # and it goes with its model
