"""emanet.capability: the bf16 probe, its override, and what "auto" resolves to on each kind of CPU."""

from __future__ import annotations

import pytest
import torch

import emanet.capability as capability


@pytest.fixture(autouse=True)
def _fresh_warnings():
    capability._warn_once.cache_clear()
    yield
    capability._warn_once.cache_clear()


@pytest.mark.parametrize("native", [False, True])
def test_auto_follows_native_bf16_on_cpu(native, monkeypatch):
    monkeypatch.setattr(capability, "cpu_has_native_bf16", lambda: native)
    assert capability.resolve_amp("auto", "cpu") == ("bf16" if native else "none")
    assert capability.resolve_amp("none", "cpu") == "none"


def test_explicit_bf16_without_native_support_warns_and_is_kept(monkeypatch):
    monkeypatch.setattr(capability, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        assert capability.resolve_amp("bf16", "cpu") == "bf16"


def test_explicit_bf16_with_native_support_is_silent(monkeypatch, recwarn):
    monkeypatch.setattr(capability, "cpu_has_native_bf16", lambda: True)
    assert capability.resolve_amp("bf16", torch.device("cpu")) == "bf16"
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_bad_amp_is_one_clear_line():
    with pytest.raises(ValueError, match=r"amp='int8' is not valid; choose one of auto, none, bf16, fp16"):
        capability.resolve_amp("int8", "cpu")


@pytest.mark.parametrize("value, expected", [("0", False), ("1", True)])
def test_environment_overrides_the_probe(value, expected, monkeypatch):
    monkeypatch.setenv("EMANET_CPU_BF16", value)
    assert capability.cpu_has_native_bf16() is expected


def test_bad_override_names_the_variable(monkeypatch):
    monkeypatch.setenv("EMANET_CPU_BF16", "yes")
    with pytest.raises(ValueError, match="EMANET_CPU_BF16='yes' is not valid; use 0 or 1"):
        capability.cpu_has_native_bf16()


def test_probe_agrees_with_onednn(monkeypatch):
    monkeypatch.delenv("EMANET_CPU_BF16", raising=False)
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    want = bool(torch.backends.mkldnn.is_available() and check is not None and check())
    assert capability.cpu_has_native_bf16() is want


def test_amp_dtype():
    assert capability.amp_dtype("none") is None
    assert capability.amp_dtype("bf16") is torch.bfloat16
    assert capability.amp_dtype("fp16") is torch.float16


def test_describe_names_isa_bf16_and_threads(monkeypatch):
    monkeypatch.setenv("EMANET_CPU_BF16", "0")
    line = capability.describe()
    assert f"torch ISA: {torch.backends.cpu.get_cpu_capability()}" in line
    assert "native bf16: no" in line and f"threads: {torch.get_num_threads()}" in line
