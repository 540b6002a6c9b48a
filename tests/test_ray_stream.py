"""The Ray runner's actors stream like the local runner, and survive losing one."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest
from conftest import write_shards
from helpers import make_config, read_output, table_version
from scripted_job import BrokenFactory, SlowFactory, WindowFactory

from batch.runners.ray import run_label_job_ray


def keys(output):
    rows = read_output(output)
    cols = [rows.column(c).to_pylist() for c in ("source_file", "source_row", "policy_id")]
    return Counter(zip(*cols, strict=True))


def expected(sizes, policies):
    return {
        (f"shard-{s}.parquet", r, p.id)
        for s, n in enumerate(sizes)
        for r in range(n)
        for p in policies
    }


def test_an_actor_feeds_its_engine_from_several_groups_at_once(tmp_path, policies, local_ray):
    sizes = [6] * 4
    shards = write_shards(tmp_path / "in", sizes)
    # Groups of 2 chunks x 2 rows x 1 policy = 4 requests; the engine may hold 12.
    config = make_config([shards], policies[:1], tmp_path / "out", max_in_flight=12)
    window = tmp_path / "window"
    run_label_job_ray(config, WindowFactory(str(window)), replicas=1, cpus_per_replica=0.5)
    # One engine call per group (the Ray Data runner before) never held more than 4.
    assert int(window.read_text()) == 12
    found = keys(tmp_path / "out")
    assert set(found) == expected(sizes, policies[:1]) and max(found.values()) == 1


def test_an_actor_killed_mid_run_is_replaced_and_every_row_is_labelled_once(
    tmp_path, policies, local_ray
):
    import ray

    sizes = [4] * 8
    shards = write_shards(tmp_path / "in", sizes)
    config = make_config([shards], policies, tmp_path / "out")
    outcome = {}

    def labelling():
        try:
            outcome["result"] = run_label_job_ray(
                config, SlowFactory(0.2), replicas=2, cpus_per_replica=0.5
            )
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=labelling)
    thread.start()
    deadline = time.monotonic() + 120
    pids = {}
    while time.monotonic() < deadline and (len(pids) < 2 or table_version(config.output) < 2):
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["name"].startswith("safeguard-chunks-")]  # fmt: skip
        if names:
            pids = ray.get(ray.get_actor(names[0]).worker_pids.remote())
        time.sleep(0.1)
    assert len(pids) == 2, pids
    os.kill(sorted(pids.values())[0], signal.SIGKILL)  # one actor's process, mid-run
    thread.join(timeout=300)
    assert "error" not in outcome, outcome.get("error")
    found = keys(tmp_path / "out")
    assert set(found) == expected(sizes, policies) and max(found.values()) == 1
    assert outcome["result"].manifest["counts"]["rows"] >= sum(sizes)


def test_a_job_error_in_an_actor_stops_the_run_with_that_error(tmp_path, policies, local_ray):
    from batch.errors import SafeguardError

    shards = write_shards(tmp_path / "in", [3])
    config = make_config([shards], policies[:1], tmp_path / "out")
    with pytest.raises(
        SafeguardError, match="answered a request it was not given, or one request twice"
    ):
        run_label_job_ray(config, BrokenFactory(), replicas=1, cpus_per_replica=0.5)
