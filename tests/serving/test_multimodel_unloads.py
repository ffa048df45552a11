"""Every finished unload is reported once, in the next /invocations answer
(`x-moorage-model-unloaded: <µs>,...`), whatever caused it; models being unloaded are not counted as
loaded; a model that timed out on one worker keeps its other requests."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.serving.multimodel_support import StartMultiModel, counting_model, eventually, pid_gone

MB = 1024 * 1024


def _unloaded(headers: dict[str, str]) -> list[int]:
    text = headers.get("x-moorage-model-unloaded")
    return [int(part) for part in text.split(",")] if text is not None else []


def test_each_unload_is_reported_once_whatever_caused_it(start_multimodel: StartMultiModel) -> None:
    def build(models: Path) -> None:
        for name in ("m1", "m2", "m3"):
            counting_model(models, f"{name}.tar.gz", name, size=50 * MB)

    mme = start_multimodel(build, MOORAGE_MME_MEMORY_BYTES=str(160 * MB))
    assert _unloaded(mme.invoke("m1.tar.gz").headers) == []
    assert _unloaded(mme.invoke("m2.tar.gz").headers) == []
    making_room = mme.invoke("m3.tar.gz")  # m1 goes to make room
    assert making_room.status == 200 and mme.loaded() == ["m2.tar.gz", "m3.tar.gz"]
    assert len(_unloaded(making_room.headers)) == 1 and _unloaded(making_room.headers)[0] > 0
    assert _unloaded(mme.invoke("m3.tar.gz").headers) == []  # reported once

    assert mme.call("DELETE", "/models/m2.tar.gz").status == 200
    after_delete = mme.invoke("m3.tar.gz")
    assert after_delete.headers["x-moorage-loaded-models"] == "1"
    assert len(_unloaded(after_delete.headers)) == 1

    pids = mme.describe("m3.tar.gz")["pids"]
    os.kill(pids[0], signal.SIGKILL)  # a crash: cleaned up, and reported as an unload too
    eventually(lambda: mme.loaded() == [] and all(pid_gone(pid) for pid in pids))
    reloaded = mme.invoke("m3.tar.gz")
    assert reloaded.status == 200 and len(_unloaded(reloaded.headers)) == 1


def test_caching_disabled_reports_each_discard(start_multimodel: StartMultiModel) -> None:
    mme = start_multimodel(
        lambda models: counting_model(models, "once.tar.gz", "once"), MOORAGE_MME_CACHING="Disabled"
    )
    first = mme.invoke("once.tar.gz")
    assert first.status == 200 and first.headers["x-moorage-loaded-models"] == "0"
    assert _unloaded(first.headers) == []  # the discard runs after this answer
    pid = first.json()["pid"]
    eventually(lambda: pid_gone(pid))
    second = mme.invoke("once.tar.gz")
    assert second.status == 200 and len(_unloaded(second.headers)) == 1


def test_a_timed_out_worker_is_replaced_and_the_model_serves_on(start_multimodel: StartMultiModel) -> None:
    mme = start_multimodel(
        lambda models: counting_model(models, "m.tar.gz", "m"), MOORAGE_MME_INVOCATION_TIMEOUT_SECONDS="2"
    )
    assert mme.invoke("m.tar.gz").status == 200
    timed_out = mme.invoke("m.tar.gz", {"sleep": 30})
    assert timed_out.status == 504 and "stays loaded" in timed_out.text
    assert _unloaded(timed_out.headers) == []  # nothing was unloaded: one worker was replaced
    eventually(lambda: mme.invoke("m.tar.gz").status == 200)
    assert mme.load_count("m") == 1 and mme.loaded() == ["m.tar.gz"]
