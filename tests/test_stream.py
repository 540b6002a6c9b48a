"""The streaming flow: the engine is fed across groups, each group commits on its own."""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.parquet as pq
from helpers import make_config, read_output, run, well_formed

from batch.engine.scripted import ScriptedEngine, harmony_completion
from batch.flow.labeller import Labeller
from batch.runners.local import run_label_job


def shard(folder, texts):
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"r{i}" for i in range(len(texts))]
    pq.write_table(pa.table({"id": ids, "text": texts}), folder / "s.parquet")
    return folder


def text_of(request) -> str:
    from batch.vocab import load_encoding

    text = load_encoding().decode(list(request.prompt_token_ids))
    return text.rsplit("<|start|>user<|message|>", 1)[1].split("<|end|>")[0]


class Events:
    """Answers and commits in the order they happen; a commit lists the texts it writes."""

    def __init__(self, monkeypatch) -> None:
        self.log: list[str] = []
        commit = Labeller.commit

        def logged(labeller, parts):
            names = sorted(
                group.todo[group.decisions[n].task].chunk.texts[group.decisions[n].item.row]
                for group, numbers in parts
                for n in numbers
            )
            self.log.append(f"commit {' '.join(names)}")
            return commit(labeller, parts)

        monkeypatch.setattr(Labeller, "commit", logged)

    def respond(self, request):
        self.log.append(f"answer {text_of(request)}")
        return well_formed(request)


def every_answer_commits(monkeypatch) -> None:
    import batch.flow.stream as stream

    monkeypatch.setattr(stream, "COMMIT_GAP_SECONDS", 0.0)
    monkeypatch.setattr(stream, "MAX_COMMIT_GAP_SECONDS", 0.0)


def test_groups_overlap_in_the_engine_and_commit_before_the_last_answer(
    tmp_path, policies, monkeypatch
):
    events = Events(monkeypatch)
    engine = ScriptedEngine(events.respond, per_step=1)
    source = shard(tmp_path / "in", [f"message {i}" for i in range(12)])
    # groups of 4 requests (2 rows x 2 policies), up to 10 requests in the engine at once
    result = run([source], policies, tmp_path / "out", engine, chunk_size=2, batch_size=4,
                 max_in_flight=10)  # fmt: skip
    assert engine.max_in_flight_seen == 10  # more than one group in flight: no drain between
    commits = [i for i, e in enumerate(events.log) if e.startswith("commit")]
    answers = [i for i, e in enumerate(events.log) if e.startswith("answer")]
    assert len(commits) == result.manifest["counts"]["commits"] >= 2
    assert commits[0] == answers[0] + 1  # the first answer is written at once
    assert commits[0] < answers[-1]  # the first rows are written while others still run
    timing = result.manifest["timing"]
    assert 0 < timing["first_commit_seconds"] <= timing["wall_seconds"]
    assert read_output(tmp_path / "out").num_rows == 24


class SlowLast(ScriptedEngine):
    """Answers in arrival order, except ``slow`` content, answered last of all."""

    def __init__(self, events: Events) -> None:
        super().__init__()
        self.events = events

    def stream(self, requests, sampling, max_in_flight):
        late = []
        for key, request in requests:
            if "slow" in text_of(request):
                late.append(key)
                continue
            self.events.log.append(f"answer {text_of(request)}")
            yield key, harmony_completion(well_formed(request))
        for key in late:
            self.events.log.append("answer slow")
            yield key, harmony_completion("0")


def test_a_slow_request_holds_back_only_its_own_row(tmp_path, policies, monkeypatch):
    every_answer_commits(monkeypatch)
    events = Events(monkeypatch)
    source = shard(tmp_path / "in", ["slow one", "b", "c", "d", "e", "f"])
    result = run([source], policies[:1], tmp_path / "out", SlowLast(events), chunk_size=2,
                 batch_size=2, max_in_flight=100)  # fmt: skip
    commits = [e for e in events.log if e.startswith("commit")]
    # its chunk-mate "b" and every later group are written before it
    assert commits == ["commit b", "commit c", "commit d", "commit e", "commit f",
                       "commit slow one"]  # fmt: skip
    assert read_output(tmp_path / "out").num_rows == 6
    assert result.manifest["counts"]["status"]["ok"] == 6
    assert not list((tmp_path / "out" / "_claims").glob("*"))  # released after the last commit


def test_answers_within_the_gap_share_the_next_commit(tmp_path, policies, monkeypatch):
    import batch.flow.stream as stream

    monkeypatch.setattr(stream, "COMMIT_GAP_SECONDS", 0.3)
    events = Events(monkeypatch)
    order = ["a", "b", "e", "f", "c", "g", "slow", "h"]

    class Ordered(ScriptedEngine):
        def stream(self, requests, sampling, max_in_flight):
            pending = {text_of(request): key for key, request in requests}
            for text in order:
                if text == "c":
                    time.sleep(0.5)  # past the gap: this answer, of another group, commits
                events.log.append(f"answer {text}")
                yield pending[text], harmony_completion("0")

    source = shard(tmp_path / "in", ["a", "b", "c", "slow", "e", "f", "g", "h"])
    # two groups of two chunks: (a b)(c slow), (e f)(g h)
    result = run([source], policies[:1], tmp_path / "out", Ordered(), chunk_size=2,
                 batch_size=4, max_in_flight=100)  # fmt: skip
    assert events.log == [
        "answer a", "commit a",  # the first answer at once
        "answer b", "answer e", "answer f",  # within the gap: they wait
        "answer c", "commit b c e f",  # past it: one commit, both groups
        "answer g", "answer slow", "answer h", "commit g h slow",  # the rest at the end
    ]  # fmt: skip
    assert result.manifest["counts"]["commits"] == 3


def test_enough_waiting_rows_commit_within_the_gap(tmp_path, policies, monkeypatch):
    import batch.flow.stream as stream

    monkeypatch.setattr(stream, "COMMIT_GAP_SECONDS", 3600.0)
    monkeypatch.setattr(stream, "MAX_COMMIT_GAP_SECONDS", 3600.0)
    events = Events(monkeypatch)
    source = shard(tmp_path / "in", [f"m{i}" for i in range(9)])
    config = make_config([source], policies[:1], tmp_path / "out", chunk_size=3, batch_size=3)
    labeller = Labeller(config, ScriptedEngine(events.respond, per_step=1), "run-1")
    from batch.flow.chunks import iter_chunks
    from batch.flow.stream import GroupStream

    groups = [([chunk], None) for chunk in iter_chunks(config.inputs[0], "id", "text", 3)]
    list(GroupStream(labeller, 100, ready_limit=4).run(groups))
    commits = [e for e in events.log if e.startswith("commit")]
    # the first answer at once, then every 4 waiting rows, then what is left at the end
    assert commits == ["commit m0", "commit m1 m2 m3 m4", "commit m5 m6 m7 m8"]


def test_identical_work_in_two_open_groups_is_asked_once(tmp_path, policies):
    engine = ScriptedEngine(well_formed, per_step=1)
    source = shard(tmp_path / "in", ["same", "same", "other", "same"])
    result = run([source], policies[:1], tmp_path / "out", engine, chunk_size=1, batch_size=1,
                 max_in_flight=8)  # fmt: skip
    assert engine.max_in_flight_seen > 1  # the groups were open at the same time
    assert engine.requests_seen == 2
    rows = {r["id"]: r for r in read_output(tmp_path / "out").to_pylist()}
    assert [rows[f"r{i}"]["origin"] for i in range(4)] == [
        "model",
        "duplicate",
        "model",
        "duplicate",
    ]
    assert len({rows[f"r{i}"]["label"] for i in (0, 1, 3)}) == 1
    assert result.manifest["per_policy"]["spam"]["deduplicated"] == 2


def test_held_work_is_asked_itself_when_the_first_answer_failed(tmp_path, policies):
    answers = iter(["not a verdict", "0", "0"])
    engine = ScriptedEngine(lambda request: next(answers), per_step=1)
    source = shard(tmp_path / "in", ["same", "same"])
    run([source], policies[:1], tmp_path / "out", engine, chunk_size=1, batch_size=1,
        max_in_flight=8, max_attempts=1)  # fmt: skip
    rows = {r["id"]: r for r in read_output(tmp_path / "out").to_pylist()}
    assert engine.requests_seen == 2  # an earlier parse error is not carried over
    assert (rows["r0"]["status"], rows["r1"]["status"]) == ("parse_error", "ok")
    assert rows["r1"]["origin"] == "model"


def test_progress_moves_per_request_and_ends_at_every_row(tmp_path, policies):
    from batch.flow.stream import GroupStream

    source = shard(tmp_path / "in", [f"m{i}" for i in range(6)])
    config = make_config([source], policies, tmp_path / "out", chunk_size=6, batch_size=100)
    labeller = Labeller(config, ScriptedEngine(well_formed, per_step=1), "run-1")
    from batch.flow.chunks import iter_chunks

    chunks = list(iter_chunks(config.inputs[0], "id", "text", 6))
    moves: list[int] = []
    done = [p for _, p in GroupStream(labeller, 100, moves.append).run([(chunks, "g")]) if p]
    assert done == ["g"] and sum(moves) == 6
    assert len([m for m in moves if m]) > 1  # it moved before the group was written


def test_the_default_in_flight_is_four_times_the_engine_slots(tmp_path, policies, small_shards):
    from batch.runners.local import max_in_flight

    config = make_config([small_shards], policies, tmp_path / "out", batch_size=7)
    assert max_in_flight(config, ScriptedEngine(slots=16)) == 64
    assert max_in_flight(config, ScriptedEngine()) == 7
    config.max_in_flight = 3
    assert max_in_flight(config, ScriptedEngine(slots=16)) == 3
    engine = ScriptedEngine(well_formed)
    run_label_job(config, engine)
    assert engine.max_in_flight_seen <= 3
