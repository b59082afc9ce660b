"""Published weights (emanet/models/zoo.py): download -> verify -> cache -> strict load, offline.

A loopback HTTP server (127.0.0.1, started here, stopped after each test) serves files written
here in each publisher's exact layout and file name convention: timm's Hub `model.safetensors`
(deep stem conv1.0/1/3/4/6 + fc), torchvision's `resnetN-<sha256[:8]>.pth`, OpenMMLab's
`resnetN_v1c-<sha256[:8]>.pth` (stem.* + fc) and an OpenMMLab EMANet checkpoint
(`{'state_dict', 'meta'}`). The table's entries are rebuilt by the zoo's own builders with the
host swapped for the server. Nothing here touches the internet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading

import pytest
import torch
from publisher_layouts import encoding_sd, mmseg_sd, mmseg_v1c_sd, torchvision_sd
from safetensors.torch import save_file

import emanet
from emanet.models import zoo
from emanet.models.convert import export_mmseg
from emanet.models.convert_imagenet import export_backbone


class _Server:
    """Serves `files` {url path: bytes}; `mode` "ok" | "truncate" | "drop" for every response."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.mode, self.hits = files, "ok", []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                outer.hits.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.mode == "ok":
                    self.wfile.write(body)
                elif outer.mode == "truncate":  # a short body, then a clean close
                    self.wfile.write(body[: len(body) // 2])
                else:  # "drop": the connection is cut mid-body
                    self.wfile.write(body[:100])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def _torch_bytes(obj, tmp_path, name) -> bytes:
    path = tmp_path / name
    torch.save(obj, path)
    return path.read_bytes()


def _serve(entry: zoo.Published, server_url: str, body: bytes, files: dict, with_hash: bool = True):
    """`entry` moved to the server; its hash prefix recomputed for the random body, in the
    publisher's own convention (first 8 hex of SHA-256 in the file name)."""
    path = "/" + entry.url.split("/", 3)[3]
    files[path] = body
    digest = hashlib.sha256(body).hexdigest()[:8] if with_hash else None
    return dataclasses.replace(entry, url=server_url + path, sha256_prefix=digest)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("EMANET_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("EMANET_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "cache"


def _backbones(tmp_path):
    """{(stem, depth): (entry, file bytes, the file's state dict)} for three publishers, ResNet-18."""
    timm = encoding_sd(18, stem="deep")
    tv = torchvision_sd(18)
    v1c = mmseg_v1c_sd(18)
    tv_name, v1c_name = "resnet18-x.pth", "resnet18_v1c-x.pth"
    st = tmp_path / "model.safetensors"
    save_file(timm, str(st))
    return {
        ("deep", 18): (zoo._timm(18), st.read_bytes(), timm, False),  # Hub files: no hash given
        ("classic", 18): (zoo._torchvision(18), _torch_bytes(tv, tmp_path, tv_name), tv, True),
        ("deep_v1c", 18): (zoo._mmcv(18), _torch_bytes(v1c, tmp_path, v1c_name), v1c, True),
    }


@pytest.mark.slow
def test_imagenet_download_verify_cache_strict_load(tmp_path, home, monkeypatch):
    files: dict[str, bytes] = {}
    with _Server(files) as server:
        table = {}
        for key, (entry, body, sd, hashed) in _backbones(tmp_path).items():
            table[key] = (_serve(entry, server.url, body, files, hashed), sd)
        monkeypatch.setattr(zoo, "IMAGENET_BACKBONES", {k: e for k, (e, _) in table.items()})
        layouts = {"deep": "encoding", "classic": "torchvision", "deep_v1c": "mmseg"}
        for (stem, _depth), (entry, sd) in table.items():
            model = emanet.create_model("fcn_r18", 3, stem=stem, backbone_weights="imagenet")
            foreign = export_backbone(model.backbone, layouts[stem])
            for k, v in foreign.items():  # weights equal the file's, key by key
                assert torch.equal(v, sd[k].to(v.dtype)), k
            assert (home / entry.filename).is_file()
        n = len(server.hits)
        for stem, _depth in table:  # cached: no network
            emanet.create_model("fcn_r18", 3, stem=stem, backbone_weights="imagenet")
        assert len(server.hits) == n == 3
    assert sorted(p.name for p in home.iterdir()) == sorted(e.filename for e, _ in table.values())


def test_unknown_combination_lists_what_exists(home):
    with pytest.raises(
        ValueError, match=r"stem='deep' depth=18;.*stem='deep' depth=50.*stem='classic' depth=18"
    ):
        zoo.imagenet_backbone_file("deep", 18)


@pytest.mark.slow
def test_full_model_by_name(tmp_path, home, monkeypatch):
    model = emanet.create_model("emanet_r50", 19, stem="deep_v1c", multi_grid=None, concat_input=True)
    sd = mmseg_sd(50, 19)
    body = _torch_bytes(
        {"state_dict": sd, "meta": {"CLASSES": [f"c{i}" for i in range(19)]}}, tmp_path, "m.pth"
    )
    files: dict[str, bytes] = {}
    name = "emanet_r50_cityscapes_512x1024"
    with _Server(files) as server:
        entry = _serve(zoo.PRETRAINED[name], server.url, body, files)
        monkeypatch.setattr(zoo, "PRETRAINED", {name: entry})
        model = emanet.from_pretrained(name)
        assert server.hits == ["/" + entry.url.split("/", 3)[3]]
        for k, v in export_mmseg(model).items():
            assert torch.equal(v, sd[k].to(v.dtype)), k
        assert model.class_names[0] == "c0"
        emanet.from_pretrained(name)
        assert len(server.hits) == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault,key",
    [
        ("hash", ("classic", 18)),
        ("truncate", ("deep", 18)),
        ("drop", ("deep", 18)),
        ("drop", ("classic", 18)),
    ],
)
def test_bad_downloads_leave_nothing(tmp_path, home, fault, key):
    entry, body, _, hashed = _backbones(tmp_path)[key]
    files: dict[str, bytes] = {}
    with _Server(files) as server:
        entry = _serve(entry, server.url, body, files, hashed)
        if fault == "hash":
            entry = dataclasses.replace(entry, sha256_prefix="00000000")
            match = r"was refused: its SHA-256 is [0-9a-f]{64}, the publisher's starts with 00000000"
        else:  # a short body fails the hash when there is one, the read-back when there is none
            server.mode = fault
            match = r"(truncated or corrupt|failed|refused: its SHA-256).*nothing was cached"
        with pytest.raises((ValueError, OSError), match=match) as err:
            zoo.fetch(entry, progress=False)
    assert "\n" not in str(err.value) and str(home / entry.filename) in str(err.value)
    assert not home.exists() or list(home.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("var", ["EMANET_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_names_url_and_path(home, monkeypatch, var):
    monkeypatch.setenv(var, "1")
    entry = zoo.IMAGENET_BACKBONES[("deep", 101)]
    with pytest.raises(FileNotFoundError) as err:
        emanet.create_model("emanet_r101", 21, backbone_weights="imagenet")
    line = str(err.value)
    assert "\n" not in line and entry.url in line and str(home / entry.filename) in line


def test_hub_needs_the_extra():
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install 'emanet\[hub\]'"):
            emanet.from_pretrained("hf-hub:someone/emanet")


def test_eval_and_predict_take_a_published_name(home, monkeypatch):
    """`emanet eval/predict --checkpoint NAME` load through the table: offline, the one line
    names the file to fetch (no network is touched)."""
    from emanet.engine.inference import load_model

    monkeypatch.setenv("EMANET_OFFLINE", "1")
    name = next(iter(zoo.PRETRAINED))
    with pytest.raises(FileNotFoundError) as err:
        load_model(name)
    assert zoo.PRETRAINED[name].url in str(err.value)
