"""The label store's pointer file: a hash table on disk whose every slot is only a hint."""

from __future__ import annotations

import os
import struct

from batch.output.pointers import FIRST_CAPACITY, HEADER, PointerFile


def keys(count: int, work: int = 1, seed: int = 0) -> list[tuple[int, bytes]]:
    import hashlib

    return [(work, hashlib.sha256(f"{seed}-{i}".encode()).digest()[:16]) for i in range(count)]


def test_what_is_put_is_got_back_and_a_second_put_replaces(tmp_path):
    table = PointerFile(tmp_path / "p.bin")
    entries = keys(1000)
    table.put((k, (i % 7, i, 3)) for i, k in enumerate(entries))
    got = table.get(entries)
    assert got == {k: (i % 7, i, 3) for i, k in enumerate(entries)}
    table.put([(entries[0], (9, 99, 4))])
    assert table.get([entries[0]]) == {entries[0]: (9, 99, 4)}
    assert table.count == 1000
    # the same content under another work key is another key
    other = (2, entries[0][1])
    assert table.get([other]) == {}


def test_it_grows_past_its_first_capacity_and_keeps_everything(tmp_path):
    table = PointerFile(tmp_path / "p.bin")
    entries = keys(FIRST_CAPACITY)  # more than MAX_LOAD of the first capacity
    table.put((k, (1, i, 2)) for i, k in enumerate(entries))
    assert table.capacity > FIRST_CAPACITY
    assert len(table.get(entries)) == len(entries)
    reopened = PointerFile(tmp_path / "p.bin")  # another process sees the grown file
    assert reopened.capacity == table.capacity and reopened.count == len(entries)
    assert len(reopened.get(entries[:100])) == 100


def test_a_writer_killed_mid_put_leaves_a_count_that_is_recounted(tmp_path):
    path = tmp_path / "p.bin"
    table = PointerFile(path)
    table.put((k, (1, i, 2)) for i, k in enumerate(keys(500)))
    fd = os.open(path, os.O_RDWR)
    os.pwrite(fd, struct.pack("<8sQQQ", b"SGPTRS01", table.capacity, 3, 1), 0)  # stale, dirty
    os.close(fd)
    assert PointerFile(path).count == 500


def test_a_file_that_is_not_a_pointer_table_is_started_again(tmp_path):
    path = tmp_path / "p.bin"
    path.write_bytes(b"garbage" * 100)
    table = PointerFile(path)
    assert table.capacity == FIRST_CAPACITY and table.count == 0
    assert path.stat().st_size == HEADER + FIRST_CAPACITY * 32
    table.put([(keys(1)[0], (1, 2, 3))])
    assert table.get(keys(1)) == {keys(1)[0]: (1, 2, 3)}


def test_lookups_and_inserts_cost_the_same_in_a_big_table(tmp_path):
    """The reason for the file: a B-tree of random keys got 8x slower per insert by 2M."""
    import time

    table = PointerFile(tmp_path / "p.bin")

    def seconds(batch):
        started = time.perf_counter()
        table.put((k, (1, 1, 1)) for k in batch)
        table.get(batch)
        return time.perf_counter() - started

    first = seconds(keys(20_000, seed=1))
    for seed in range(2, 12):
        table.put((k, (1, 1, 1)) for k in keys(20_000, seed=seed))
    late = seconds(keys(20_000, seed=99))
    assert table.count == 240_000
    assert late < 3 * first, (first, late)


def test_keys_that_start_at_one_slot_in_one_put_each_get_their_own(tmp_path):
    """Inserts probe a window of keys together: keys racing for one free slot must not
    overwrite each other (all of these hash to the same first slot)."""
    table = PointerFile(tmp_path / "p.bin")
    colliding = [(1, struct.pack("<QQ", (i + 1) << 40, i + 7)) for i in range(300)]
    table.put((k, (1, i, 2)) for i, k in enumerate(colliding))
    assert table.count == 300
    assert table.get(colliding) == {k: (1, i, 2) for i, k in enumerate(colliding)}
    twice = keys(1, seed=5)[0]
    table.put([(twice, (1, 1, 1)), (colliding[3], (8, 8, 8)), (twice, (2, 2, 2))])
    assert table.count == 301  # a key put twice in one call is one key, its last value
    assert table.get([twice, colliding[3]]) == {twice: (2, 2, 2), colliding[3]: (8, 8, 8)}


def test_the_file_format_is_unchanged_a_slot_written_by_hand_is_found(tmp_path):
    """Files written before the vectorised probing stay readable: same hash, same slots."""
    path = tmp_path / "p.bin"
    table = PointerFile(path)
    work, content = 3, bytes(range(1, 17))
    start = (int.from_bytes(content[:8], "little") ^ ((work * 0x9E3779B97F4A7C15) % 2**64)) % (
        table.capacity
    )
    fd = os.open(path, os.O_RDWR)
    os.pwrite(fd, content + struct.pack("<IIII", work, 5, 6, 7), HEADER + start * 32)
    os.close(fd)
    assert PointerFile(path).get([(work, content)]) == {(work, content): (5, 6, 7)}
