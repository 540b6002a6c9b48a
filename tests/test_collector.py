"""The run's garbage collection: with Python's default thresholds, a run's short-lived objects
set off full collections that walk everything alive, a quarter of the harness's time at 200k
rows (batch/flow/collector.py). Inside a run there are none; after it, nothing is left changed."""

from __future__ import annotations

import gc

from conftest import SCRIPTS  # noqa: F401  (scripts/ on the path)

from batch.flow.collector import RUN_THRESHOLDS, few_collections


def _run(tmp_path, rows: int) -> list[int]:
    """A scripted run of ``rows`` rows x 2 policies; the generations it collected."""
    import bench_run_scale
    from scripted_runs import policy_responder, write_inputs

    from batch.engine.scripted import ScriptedEngine
    from batch.runners.local import run_label_job

    write_inputs(tmp_path / "in", rows, 1)
    config = bench_run_scale.job_config(tmp_path / "in", tmp_path / "out")
    engine = ScriptedEngine(policy_responder(config.policies), record=False)
    generations: list[int] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "start":
            generations.append(info["generation"])

    gc.callbacks.append(seen)
    try:
        manifest = run_label_job(config, engine).manifest
    finally:
        gc.callbacks.remove(seen)
    assert manifest["counts"]["labelled"] == 2 * rows
    return generations


def test_a_run_makes_no_full_collection_and_leaves_the_collector_as_it_was(tmp_path):
    before = gc.get_threshold()
    generations = _run(tmp_path, 20_000)
    assert generations.count(2) == 0  # the defaults made 6 here (62 at 200,000 rows)
    assert len(generations) < 40  # the defaults made about 770
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_cycles_made_inside_are_still_collected_and_blocks_nest():
    class Node:
        pass

    with few_collections():
        assert gc.get_threshold() == RUN_THRESHOLDS
        with few_collections():
            node = Node()
            node.self = node
            del node
        assert gc.get_threshold() == RUN_THRESHOLDS  # the inner block restored nothing
        assert gc.collect() >= 1  # the cycle is found by a collection
