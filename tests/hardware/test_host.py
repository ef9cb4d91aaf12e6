"""Host facts: probing this machine and ``--assume`` specs."""

from __future__ import annotations

import json

import attrs
import pytest

from dlm.errors import UsageError
from dlm.hardware.host import GIB, HostFacts, assume_host, library_versions, probe_host


@pytest.mark.parametrize(
    ("spec", "backend", "gib", "bf16", "fp16", "capability", "devices"),
    [
        ("cuda:24", "cuda", 24, True, True, (8, 0), 1),
        ("cuda:16:sm75", "cuda", 16, False, True, (7, 5), 1),
        ("cuda:80x8", "cuda", 80, True, True, (8, 0), 8),
        ("cuda:141x2:sm90", "cuda", 141, True, True, (9, 0), 2),
        ("cuda:32:sm120", "cuda", 32, True, True, (12, 0), 1),
        ("cuda:11.5:sm61", "cuda", 11.5, False, True, (6, 1), 1),
        ("mps:16", "mps", 16, False, True, None, 1),
        ("mps:64:bf16", "mps", 64, True, True, None, 1),
        ("cpu:32", "cpu", 32, False, False, None, 0),
        (" CUDA:24 ", "cuda", 24, True, True, (8, 0), 1),
    ],
)
def test_assume_forms(spec, backend, gib, bf16, fp16, capability, devices):
    host = assume_host(spec)
    assert host.backend == backend
    assert host.memory_bytes == int(gib * GIB)
    assert host.bf16 is bf16
    assert host.fp16 is fp16
    assert host.compute_capability == capability
    assert host.device_count == devices
    assert host.assumed is True
    assert host.apple_silicon is (backend == "mps")
    assert host.cpu_count >= 1


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "gpu:24",
        "cuda",
        "cuda:",
        "cuda:0",
        "cuda:24GB",
        "cuda:24:sm7",
        "cuda:24:fast",
        "cuda:24x0",
        "mps:16x2",
        "mps:16:sm80",
        "cpu:32:bf16",
        "cpu:-4",
    ],
)
def test_bad_assume_is_a_usage_error_listing_the_forms(spec):
    with pytest.raises(UsageError) as info:
        assume_host(spec)
    err = info.value
    assert err.exit_code == 2
    assert repr(spec) in err.message
    # the way out: every accepted form is named
    for form in ("cuda:24", "cuda:16:sm75", "cuda:80x8", "mps:16", "mps:64", "cpu:32"):
        assert form in err.hint


def test_probe_this_machine():
    import torch

    host = probe_host()
    assert isinstance(host, HostFacts)
    assert host.assumed is False
    assert host.memory_bytes > 0
    assert host.system_memory_bytes > 0
    assert host.cpu_count >= 1
    if torch.cuda.is_available():
        assert host.backend == "cuda"
        assert host.device_count == torch.cuda.device_count()
        assert host.bf16 is (host.compute_capability >= (8, 0))
    elif host.backend == "cpu":
        assert host.memory_bytes == host.system_memory_bytes
        assert host.bf16 is False
        assert host.device_count == 0
    json.dumps(host.to_dict())


def test_host_facts_are_frozen():
    host = assume_host("cuda:24")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        host.memory_bytes = 1  # type: ignore[misc]


def test_library_versions_match_the_installed_stack():
    import peft
    import torch
    import transformers

    import dlm

    versions = library_versions()
    assert set(versions) == {"torch", "transformers", "peft", "accelerate", "dlm"}
    assert torch.__version__.split("+")[0] == versions["torch"]  # metadata has no local tag
    assert versions["transformers"] == transformers.__version__
    assert versions["peft"] == peft.__version__
    assert versions["dlm"] == dlm.__version__
