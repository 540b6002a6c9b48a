import pyarrow as pa
import pytest
from conftest import write_parquet

from batch.flow.read import InputError, inspect_input, iter_batches, resolve_inputs


def test_inputs_accept_directories_files_and_globs(tmp_path):
    for name in ("a.parquet", "sub/b.parquet", "_hidden.parquet", "notes.txt"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    found = resolve_inputs([str(tmp_path)])
    assert [p.rsplit("/", 1)[1] for p in found] == ["a.parquet", "b.parquet"]
    assert resolve_inputs([str(tmp_path / "a.parquet")]) == [str(tmp_path / "a.parquet")]
    # Globs skip hidden names too (issue 15), as folder expansion always did.
    assert len(resolve_inputs([str(tmp_path / "**" / "*.parquet")])) == 2
    # An explicitly named hidden file is still read.
    assert len(resolve_inputs([str(tmp_path / "_hidden.parquet")])) == 1
    # Repeats collapse to one.
    assert len(resolve_inputs([str(tmp_path), str(tmp_path / "a.parquet")])) == 2


@pytest.mark.parametrize("spec, message", [("nope", "no such file"), ("x*.parquet", "matches")])
def test_unresolvable_inputs_are_clear_errors(tmp_path, spec, message):
    with pytest.raises(InputError, match=message):
        resolve_inputs([str(tmp_path / spec)])


def test_missing_column_names_the_file_and_the_columns_it_has(tmp_path):
    path = write_parquet(tmp_path / "x.parquet", {"id": [1], "body": ["hi"]})
    with pytest.raises(InputError) as info:
        inspect_input(str(path), "id", "text")
    message = str(info.value)
    assert str(path) in message and "'text'" in message and "id, body" in message


def test_non_string_text_column_is_a_clear_error(tmp_path):
    path = write_parquet(tmp_path / "x.parquet", {"id": [1], "text": [3.5]})
    with pytest.raises(InputError, match="not a string"):
        inspect_input(str(path), "id", "text")


def test_unreadable_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match="broken.parquet: not a readable Parquet file"):
        inspect_input(str(path), "id", "text")


def test_batches_normalise_ids_and_text_types(tmp_path):
    table = pa.table(
        {
            "id": pa.array([10, 11, 12], pa.int64()),
            "text": pa.array(["x", "y", "x"]).dictionary_encode(),
        }
    )
    path = write_parquet(tmp_path / "x.parquet", {c: table[c] for c in table.column_names})
    source = inspect_input(str(path), "id", "text")
    batches = list(iter_batches(source, "id", "text", 2))
    assert [start for start, _ in batches] == [0, 2]
    merged = pa.Table.from_batches([b for _, b in batches])
    assert merged["id"].to_pylist() == ["10", "11", "12"]
    assert merged["text"].to_pylist() == ["x", "y", "x"]
    assert source.num_rows == 3


def test_fingerprint_follows_content_not_path(tmp_path):
    a = write_parquet(tmp_path / "a.parquet", {"id": [1], "text": ["hi"]})
    b = write_parquet(tmp_path / "copy" / "a.parquet", {"id": [1], "text": ["hi"]})
    c = write_parquet(tmp_path / "c.parquet", {"id": [1], "text": ["ho"]})
    fp = lambda p: inspect_input(str(p), "id", "text").fingerprint  # noqa: E731
    assert fp(a) == fp(b) != fp(c)


def test_invalid_utf8_is_replaced_not_fatal(tmp_path):
    raw = b"ok\xff\xfebad"
    offsets = pa.array([0, 2, len(raw)], pa.int32()).buffers()[1]
    texts = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(raw)])
    ids = pa.array(["a", "b"])
    path = tmp_path / "x.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ids, "text": texts}), path)
    source = inspect_input(str(path), "id", "text")
    [(_, batch)] = list(iter_batches(source, "id", "text", 10))
    assert batch.column(1).to_pylist() == ["ok", "\ufffd\ufffdbad"]


def test_ids_without_a_string_cast_still_become_strings(tmp_path):
    ids = pa.array([{"a": 1}, {"a": 2}])
    path = tmp_path / "x.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ids, "text": ["x", "y"]}), path)
    source = inspect_input(str(path), "id", "text")
    [(_, batch)] = list(iter_batches(source, "id", "text", 10))
    assert batch.column(0).to_pylist() == ["{'a': 1}", "{'a': 2}"]
