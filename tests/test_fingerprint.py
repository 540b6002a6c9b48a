import json
import shutil

import pytest

from batch.engine.fingerprint import ModelError, model_fingerprint


def fake_model(folder, weights: bytes, config=None):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config or {"model_type": "gpt_oss"}))
    header = b'{"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}'
    data = len(header).to_bytes(8, "little") + header + weights
    (folder / "model.safetensors").write_bytes(data)
    return folder


def test_fingerprint_ignores_the_path_but_not_the_weights_or_config(tmp_path):
    a = fake_model(tmp_path / "a", b"\x01\x02\x03\x04")
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    c = fake_model(tmp_path / "c", b"\x09\x02\x03\x04")
    d = fake_model(tmp_path / "d", b"\x01\x02\x03\x04", {"model_type": "gpt_oss", "layers": 3})
    assert model_fingerprint(a) == model_fingerprint(b)
    assert model_fingerprint(a) != model_fingerprint(c)
    assert model_fingerprint(a) != model_fingerprint(d)


@pytest.mark.parametrize("setup, message", [("missing", "not a local model"), ("empty", "config")])
def test_non_model_directories_are_refused(tmp_path, setup, message):
    path = tmp_path / "m"
    if setup == "empty":
        path.mkdir()
    with pytest.raises(ModelError, match=message):
        model_fingerprint(path)
