"""write_json: JSON files written atomically; a failed write keeps the previous file."""

from __future__ import annotations

import json

import pytest

from emanet.fileio import write_json


def test_write_json_round_trip_and_layout(tmp_path):
    path = tmp_path / "sub" / "r.json"  # parent directories are created
    write_json(path, {"a": [1, 2.5], "b": "x"}, indent=1)
    text = path.read_text()
    assert json.loads(text) == {"a": [1, 2.5], "b": "x"}
    assert text == json.dumps({"a": [1, 2.5], "b": "x"}, indent=1) + "\n"


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"kept": True})
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})  # not serialisable: fails before anything is replaced
    assert json.loads(path.read_text()) == {"kept": True}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind
