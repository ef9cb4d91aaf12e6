"""``dlm doctor``: host and plugin report, document plans, refusals, ``--json``."""

from __future__ import annotations

import json
import sys
import types

import pytest
from click.testing import CliRunner

import dlm.engine
from dlm.cli import cli
from dlm.format.document import TrainingSettings
from dlm.hardware.doctor_report import ExampleBudget, base_verdicts, document_report
from dlm.plugins.manager import PluginInfo
from dlm.plugins.registry import Registry
from dlm.records import ExampleKind, ImageRef, TokenCount, TrainingExample
from tests.hardware.bases import MISTRAL_SMALL_31_24B, PALIGEMMA_3B_224, QWEN2_VL_2B


def run(*args: str):
    return CliRunner().invoke(cli, ["doctor", *args], catch_exceptions=False)


def budgets(base, n=3):
    rows = []
    for i in range(n):
        rows.append(
            ExampleBudget(
                origin=f"doc.dlm:{10 * (i + 1)}",
                kind="qa",
                images=1,
                image_tokens=base.image.tokens_per_image,
                prompt_tokens=12 + i,
                completion_tokens=20 + 7 * i,
            )
        )
    return rows


@pytest.fixture
def planning(monkeypatch):
    """Install a fake ``dlm.engine.training.document_plan`` that plans with fixed inputs."""
    calls: list[tuple] = []
    module = types.ModuleType("dlm.engine.training.document_plan")
    module.base = QWEN2_VL_2B

    def plan_for_document(doc_path, host, force, processes, **parallel):
        calls.append((doc_path, host, force, processes))
        return document_report(
            document=str(doc_path),
            base=module.base,
            examples=budgets(module.base),
            settings=TrainingSettings(),
            host=host,
            force=force,
            processes=processes,
            **parallel,
        )

    module.plan_for_document = plan_for_document
    module.calls = calls
    monkeypatch.setitem(sys.modules, "dlm.engine.training.document_plan", module)
    monkeypatch.setattr(dlm.engine, "planning", module, raising=False)
    return module


@pytest.fixture
def doc(tmp_path):
    path = tmp_path / "doc.dlm"
    path.write_text("---\ndlm_id: x\nbase_model: qwen2-vl-2b-instruct\n---\n")
    return path


# ------------------------------------------------------------------ host part


def test_json_host_report_on_an_assumed_host():
    result = run("--assume", "cuda:24", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    host = data["host"]
    assert host["backend"] == "cuda" and host["assumed"] is True
    assert host["memory_bytes"] == 24 * 1024**3
    assert host["usable_bytes"] < host["memory_bytes"]
    assert host["bf16"] is True and host["compute_capability"] == [8, 0]
    assert set(data["versions"]) >= {"torch", "transformers", "peft", "accelerate", "dlm"}
    assert any(p["name"] == "dlm.builtins" and p["builtin"] for p in data["plugins"])
    assert "document" not in data
    for row in data["bases"]:
        assert row["verdict"] in ("ok", "forced", "refused")


def test_bases_are_planned_with_the_levers_dlm_train_pulls(monkeypatch):
    # dlm train computes the LM head at labelled positions only; the doctor
    # plans that step, and the plain one when DLM_LEVERS turns it off
    monkeypatch.delenv("DLM_LEVERS", raising=False)
    with_levers = json.loads(run("--assume", "cuda:24", "--json").output)
    assert with_levers["levers"] == [
        "label_head",
        "feature_cache",
        "length_batching",
        "lora_recompute",
        "fused_optimizer",
    ]
    monkeypatch.setenv("DLM_LEVERS", "none")
    plain = json.loads(run("--assume", "cuda:24", "--json").output)
    assert plain["levers"] == []
    peak = {row["key"]: row["expected_peak_bytes"] for row in with_levers["bases"]}
    plain_peak = {row["key"]: row["expected_peak_bytes"] for row in plain["bases"]}
    assert peak["paligemma-3b-mix-224"] < plain_peak["paligemma-3b-mix-224"]
    assert "none (plain step)" in run("--assume", "cuda:24").output


def test_document_plan_with_the_label_position_head():
    def planned(**levers):
        return document_report(
            document="doc.dlm",
            base=PALIGEMMA_3B_224,
            examples=budgets(PALIGEMMA_3B_224),
            settings=TrainingSettings(),
            host=_host("cuda:24"),
            **levers,
        )["plan"]

    plain, labelled = planned(), planned(label_head=True)
    assert plain["memory"]["logit_positions"] == plain["seq_len"] == 256 + 14 + 34
    assert labelled["memory"]["logit_positions"] == 34  # the longest completion
    assert labelled["expected_peak_bytes"] < plain["expected_peak_bytes"]


def test_probed_host_report():
    result = run("--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["host"]["assumed"] is False
    assert data["host"]["backend"] in ("cuda", "mps", "cpu")


def test_human_host_report():
    result = run("--assume", "mps:16")
    assert result.exit_code == 0, result.output
    for text in ("host (assumed)", "mps", "16.0 GiB", "plugins", "torch"):
        assert text in result.output


def test_bad_assume_is_misuse():
    result = run("--assume", "tpu:8")
    assert result.exit_code == 2
    assert "cannot read --assume 'tpu:8'" in result.output
    assert "cuda:16:sm75" in result.output


def test_plugin_load_errors_are_shown(monkeypatch):
    broken = PluginInfo(
        name="broken", distribution="dlm-vl-broken", version="0.1", error="ImportError: no torch"
    )
    registry = Registry(plugins=[broken])
    import dlm.plugins

    monkeypatch.setattr(dlm.plugins, "get_registry", lambda: registry)
    data = json.loads(run("--assume", "cuda:24", "--json").output)
    assert data["plugins"] == [
        {
            "name": "broken",
            "distribution": "dlm-vl-broken",
            "version": "0.1",
            "builtin": False,
            "hooks": [],
            "error": "ImportError: no torch",
            "conflicts": [],
        }
    ]
    human = run("--assume", "cuda:24").output
    assert "broken" in human and "ImportError: no torch" in human


def test_installed_real_bases_plan_on_a_big_gpu():
    from dlm.plugins import get_registry

    rows = base_verdicts(get_registry().bases.values(), _host("cuda:141:sm90"))
    assert {row["key"] for row in rows} == set(get_registry().bases)
    for row in rows:
        assert row["verdict"] == "ok", row


def _host(spec):
    from dlm.hardware.host import assume_host

    return assume_host(spec)


# ------------------------------------------------------------------ document part


def test_document_plan_json(planning, doc):
    result = run(str(doc), "--assume", "cuda:24", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["document"]
    assert report["verdict"] == "ok"
    assert report["base"]["key"] == "qwen2-vl-2b-instruct"
    assert report["base"]["text"]["vocab_size"] == 151936
    assert [e["total"] for e in report["examples"]] == [576 + 32, 576 + 40, 576 + 48]
    assert report["longest"]["index"] == 2 and report["longest"]["total"] == 624
    plan = report["plan"]
    assert plan["seq_len"] == 624
    assert plan["precision"] == "bf16"
    assert plan["expected_peak_bytes"] == plan["memory"]["total"]
    assert plan["forced"] is False
    (call,) = planning.calls
    assert call[0] == doc and call[2] is False and call[3] == 1


def test_document_plan_human(planning, doc):
    result = run(str(doc), "--assume", "cuda:24")
    assert result.exit_code == 0, result.output
    for text in (
        "3 examples",
        "doc.dlm:30",
        "longest",
        "plan for qwen2-vl-2b-instruct",
        "micro-batch",
        "expected peak",
        "logits and loss",
        "verdict: fits",
    ):
        assert text in result.output, text


def test_refused_document_exits_1_with_numbers_and_way_out(planning, doc):
    result = run(str(doc), "--assume", "cpu:64")
    assert result.exit_code == 1
    assert "verdict: refused" in result.output
    assert "doctor: qwen2-vl-2b-instruct is a real base" in result.output
    assert "GiB" in result.output and "--force" in result.output
    as_json = run(str(doc), "--assume", "cpu:64", "--json")
    assert as_json.exit_code == 1
    report = json.loads(as_json.output)["document"]
    assert report["verdict"] == "refused" and report["plan"] is None
    assert "--force" in report["refusal"]["hint"]
    assert len(report["examples"]) == 3  # the counts that led to it are still shown


def test_force_is_passed_and_recorded(planning, doc):
    result = run(str(doc), "--assume", "cpu:64", "--force", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["document"]
    assert report["verdict"] == "forced"
    assert report["plan"]["forced"] is True
    assert any(w.startswith("FORCED") for w in report["plan"]["warnings"])
    assert planning.calls[-1][2] is True


def test_cuda_first_base_on_a_mac(planning, doc):
    planning.base = MISTRAL_SMALL_31_24B
    refused = run(str(doc), "--assume", "mps:192:bf16")
    assert refused.exit_code == 1
    assert "CUDA-first" in refused.output
    forced = run(str(doc), "--assume", "mps:192:bf16", "--force")
    assert forced.exit_code == 0, forced.output
    assert "runs only because of --force" in forced.output


def test_processes_plan_per_device(planning, doc):
    result = run(str(doc), "--assume", "cuda:80x8", "--processes", "4", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)["document"]["plan"]
    assert plan["processes"] == 4
    assert plan["micro_batch"] * plan["grad_accum"] * 4 == plan["effective_batch"] == 4
    too_many = run(str(doc), "--assume", "cuda:80x2", "--processes", "4")
    assert too_many.exit_code == 2


def test_missing_engine_planning_is_a_clear_error(monkeypatch, doc):
    empty = types.ModuleType("dlm.engine.training.document_plan")
    monkeypatch.setitem(sys.modules, "dlm.engine.training.document_plan", empty)
    monkeypatch.setattr(dlm.engine, "planning", empty, raising=False)
    result = run(str(doc), "--assume", "cuda:24")
    assert result.exit_code == 1
    assert "plan_for_document" in result.output


def test_missing_document_is_misuse(tmp_path):
    result = run(str(tmp_path / "nope.dlm"))
    assert result.exit_code == 2


# ------------------------------------------------------------------ report builder


def test_example_budget_from_token_count(tmp_path):
    example = TrainingExample(
        section_id="abc",
        origin="doc.dlm:7",
        kind=ExampleKind.QA,
        prompt="What is it?",
        completion="A cat.",
        images=(ImageRef("0" * 64, tmp_path / "blob", "cat.png"),),
    )
    budget = ExampleBudget.from_count(example, TokenCount(image=256, prompt=9, completion=4))
    assert budget.to_dict() == {
        "origin": "doc.dlm:7",
        "kind": "qa",
        "images": 1,
        "image_tokens": 256,
        "prompt_tokens": 9,
        "completion_tokens": 4,
        "missing_images": 0,
        "total": 269,
    }
    # an image the document names but that is not there yet (a fresh scaffold)
    count = TokenCount(image=256, prompt=9, completion=4)
    assert ExampleBudget.from_count(example, count, {tmp_path / "blob"}).missing_images == 1


def test_empty_document_is_reported_as_refused():
    report = document_report(
        document="empty.dlm",
        base=PALIGEMMA_3B_224,
        examples=[],
        settings=TrainingSettings(),
        host=_host("cuda:24"),
    )
    assert report["verdict"] == "refused"
    assert report["longest"] is None
    assert "no training examples" in report["refusal"]["message"]
