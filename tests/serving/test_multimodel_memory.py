"""Memory and disk: the least recently used idle models are unloaded by their measured PSS, a model
larger than the budget is refused, ModelCacheSetting Disabled unloads after each invocation, and the
disk cache keeps to its cap without deleting what is loaded."""

from __future__ import annotations

from pathlib import Path

from tests.serving.multimodel_support import StartMultiModel, counting_model, eventually, pid_gone, timings

MB = 1024 * 1024
BUDGET = 160 * MB  # two models holding 50 MB each (plus their interpreters) fit; three do not


def _sized_models(models: Path) -> None:
    for name in ("m1", "m2", "m3"):
        counting_model(models, f"{name}.tar.gz", name, size=50 * MB)
    counting_model(models, "huge.tar.gz", "huge", size=170 * MB)


def test_least_recently_used_idle_models_make_room(start_multimodel: StartMultiModel) -> None:
    mme = start_multimodel(_sized_models, MOORAGE_MME_MEMORY_BYTES=str(BUDGET))
    assert mme.invoke("m1.tar.gz").status == 200
    assert mme.invoke("m2.tar.gz").status == 200
    assert mme.loaded() == ["m1.tar.gz", "m2.tar.gz"]
    costs = {name: mme.describe(name)["memoryBytes"] for name in mme.loaded()}
    assert all(50 * MB < cost < BUDGET // 2 for cost in costs.values()), costs
    m1_pids = mme.describe("m1.tar.gz")["pids"]

    assert mme.invoke("m3.tar.gz").status == 200  # m1 is the least recently used
    assert mme.loaded() == ["m2.tar.gz", "m3.tar.gz"]
    eventually(lambda: all(pid_gone(pid) for pid in m1_pids))

    assert mme.invoke("m2.tar.gz").headers["x-moorage-model-cache"] == "hit"  # now m3 is the older
    back = mme.invoke("m1.tar.gz")
    assert back.status == 200 and back.headers["x-moorage-model-cache"] == "miss"
    assert timings(back)["unloads"] == 1 and timings(back)["unload"] > 0
    assert mme.loaded() == ["m1.tar.gz", "m2.tar.gz"]
    assert mme.load_count("m1") == 2 and mme.load_count("m3") == 1
    assert sum(mme.describe(name)["memoryBytes"] for name in mme.loaded()) <= BUDGET


def test_a_model_larger_than_the_budget_is_refused(start_multimodel: StartMultiModel) -> None:
    mme = start_multimodel(_sized_models, MOORAGE_MME_MEMORY_BYTES=str(BUDGET))
    assert mme.invoke("m1.tar.gz").status == 200
    huge = mme.invoke("huge.tar.gz")
    assert huge.status == 507 and huge.headers["x-moorage-error"] == "InsufficientMemory"
    assert "'huge.tar.gz'" in huge.text and f"more than the {BUDGET} bytes" in huge.text
    assert "huge.tar.gz" not in mme.loaded()


def test_caching_disabled_unloads_and_deletes_after_each_invocation(
    start_multimodel: StartMultiModel,
) -> None:
    mme = start_multimodel(
        lambda models: counting_model(models, "once.tar.gz", "once"), MOORAGE_MME_CACHING="Disabled"
    )
    for expected_loads in (1, 2):
        reply = mme.invoke("once.tar.gz")
        assert reply.status == 200 and reply.headers["x-moorage-model-cache"] == "miss"
        eventually(lambda: mme.loaded() == [] and not any((mme.cache / "models").iterdir()))
        assert mme.load_count("once") == expected_loads


def test_disk_cap_deletes_only_models_no_instance_uses(start_multimodel: StartMultiModel) -> None:
    def build(models: Path) -> None:
        for name in ("d1", "d2", "d3"):
            counting_model(models, f"{name}.tar.gz", name)

    mme = start_multimodel(build, MOORAGE_MME_DISK_BYTES="1")
    cached = mme.cache / "models"
    assert mme.invoke("d1.tar.gz").status == 200
    assert mme.invoke("d2.tar.gz").status == 200
    assert len(list(cached.iterdir())) == 2  # over the cap, but both are loaded: neither may go
    assert mme.call("DELETE", "/models/d1.tar.gz").status == 200  # unloaded, still on disk
    assert mme.invoke("d3.tar.gz").status == 200
    eventually(lambda: len(list(cached.iterdir())) == 2)  # d1's files were deleted, d2's and d3's kept
    assert mme.invoke("d2.tar.gz").headers["x-moorage-model-cache"] == "hit"
    again = mme.invoke("d1.tar.gz")  # unpacked again from the prefix
    assert again.status == 200 and mme.load_count("d1") == 2
