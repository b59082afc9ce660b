"""push_to_hub / from_pretrained("hf-hub:...") round trip against a stand-in `huggingface_hub`
module that stores the uploaded folder locally (no network)."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import pytest
import torch

import emanet


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    store = tmp_path / "hub"
    calls: dict[str, list] = {"create_repo": [], "upload_folder": []}

    class HfApi:
        def __init__(self, token=None):
            self.token = token

        def create_repo(self, repo_id, private=False, exist_ok=False):
            calls["create_repo"].append((repo_id, private, exist_ok))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, repo_id, folder_path, commit_message=""):
            calls["upload_folder"].append((repo_id, commit_message))
            shutil.copytree(folder_path, store / repo_id, dirs_exist_ok=True)

    def hf_hub_download(repo_id, filename):
        return str(store / repo_id / filename)

    module = types.ModuleType("huggingface_hub")
    module.HfApi = HfApi
    module.hf_hub_download = hf_hub_download
    monkeypatch.setitem(sys.modules, "huggingface_hub", module)
    return store, calls


def test_push_then_load_from_hub(fake_hub):
    store, calls = fake_hub
    torch.manual_seed(0)
    model = emanet.create_model("emanet_r18", 3, ema_channels=32, channels=16, num_bases=4).eval()
    model.class_names = ["background", "cat", "dog"]
    recipe = {"data": {"name": "folder", "root": "data/pets", "train_split": "train", "crop_size": [64, 64]},
              "train": {"iters": 100, "batch_size": 4, "lr": 0.01, "amp": "auto", "seed": 66}}  # fmt: skip
    url = model.push_to_hub("me/pets", recipe=recipe, metrics={"mIoU": 0.5123, "pixel_acc": 0.9})
    assert url == "https://huggingface.co/me/pets" and calls["create_repo"] == [("me/pets", False, True)]
    uploaded = store / "me" / "pets"
    assert {p.name for p in uploaded.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    card = (uploaded / "README.md").read_text()
    assert 'from_pretrained("hf-hub:me/pets")' in card
    assert "| mIoU | 51.23 |" in card and "0: background, 1: cat, 2: dog" in card and "`folder`" in card
    loaded = emanet.from_pretrained("hf-hub:me/pets")
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.class_names == model.class_names


def test_push_without_the_extra_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    model = emanet.create_model("fcn_r18", 2, channels=8)
    with pytest.raises(ImportError, match=r"needs huggingface_hub: pip install 'emanet\[hub\]'"):
        model.push_to_hub("me/x")
    assert not Path("me").exists()
