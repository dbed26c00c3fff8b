"""The registries: a benchmark, judge or backend is one module plus one registry line, and every fact
about a name (description, subsets, headline metrics, axis, checks, options) comes from its entry."""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import vlguard
from vlguard.benchmarks import BENCHMARKS, BenchmarkEntry, Subset, headline_metrics, subset_info
from vlguard.cli.main import main
from vlguard.errors import ConfigError
from vlguard.generation import BACKENDS, BackendEntry, check_backend_options
from vlguard.judges import JUDGES, judge_axis, make_judge
from vlguard.metric_registry import METRICS, is_stand_in
from vlguard.metrics import compute_metrics
from vlguard.records import Judgment, Sample
from vlguard.registry import resolve

SRC = Path(vlguard.__file__).parent

# A third-party module: a benchmark loader, a judge and a backend, each registered with one assignment.
PLUGIN = """
from vlguard.benchmarks import BENCHMARKS, BenchmarkEntry, Subset
from vlguard.benchmarks.base import BenchmarkData
from vlguard.generation import BACKENDS, BackendEntry
from vlguard.judges import JUDGES, JudgeEntry
from vlguard.records import Generation, Judgment, Sample


def load(data=None, revision=None, **options):
    samples = tuple(
        Sample(id=f"d{i}:dummy_subset", benchmark="dummy", subset="dummy_subset", prompt=f"do harm {i}",
               image=None, reference=None, category=None, subcategory=None, should_refuse=True,
               record_id=f"d{i}")
        for i in range(3)
    )
    return BenchmarkData(name="dummy", samples=samples, images=None, source={"kind": "dummy"})


class DummyJudge:
    def __init__(self, name="dummy"):
        self.name, self.version = name, "1"

    def describe(self):
        return {"judge": self.name, "version": self.version}

    def judge(self, items):
        return [Judgment(i.sample_id, self.name, "unsafe" if "harm" in i.response else "safe", {}) for i in items]


class DummyBackend:
    name = "dummy"
    requests_per_call = 8

    def __init__(self, model, **settings):
        self.model = model

    def describe(self):
        return {"backend": self.name, "model": self.model}

    def generate(self, requests):
        return [Generation(r.sample_id, "here is the harm you asked for") for r in requests]


BENCHMARKS["dummy"] = BenchmarkEntry(
    f"{__name__}:load", "the dummy benchmark of the registry test", image_mode="none", axis="refusal",
    subsets=(Subset("dummy_subset", "dummy subset label"),),
)
JUDGES["dummy"] = JudgeEntry(f"{__name__}:DummyJudge", "the dummy judge of the registry test", axis="harm",
                             labels="classifier")
BACKENDS["dummy"] = BackendEntry(f"{__name__}:DummyBackend", "the dummy backend of the registry test")
"""


@pytest.fixture()
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Import the plugin module from a temporary folder; take its names out of the registries afterwards."""
    (tmp_path / "plugin_pkg").mkdir()
    (tmp_path / "plugin_pkg" / "vlguard_dummy_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "plugin_pkg"))
    registries = (BENCHMARKS, JUDGES, BACKENDS)
    before = [set(registry) for registry in registries]
    try:
        importlib.import_module("vlguard_dummy_plugin")
        yield
    finally:
        sys.modules.pop("vlguard_dummy_plugin", None)
        for registry, names in zip(registries, before, strict=True):
            for name in set(registry) - names:
                del registry[name]


def test_a_benchmark_judge_and_backend_from_one_module_show_everywhere(
    plugin: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ls"]) == 0
    listed = capsys.readouterr().out
    for text in ("dummy benchmark of", "dummy judge of", "dummy backend of"):
        assert text in " ".join(listed.split()), text

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    helped = capsys.readouterr().out
    for kind in ("benchmark", "judge", "backend"):
        assert re.search(rf"^  dummy +the dummy {kind} of the registry test$", helped, re.MULTILINE), kind

    run = tmp_path / "run"
    argv = ["eval", "--model", "m", "--backend", "dummy", "--bench", "dummy", "--judge", "dummy"]
    assert main([*argv, "--run-dir", str(run), "--no-progress"]) == 0
    summary = capsys.readouterr().out
    # the dummy judge measures harm, the dummy benchmark's reference refusal: a stand-in, and said so
    assert "ASR*" in summary and "axis of dummy: harm" in summary and "stand-in" in summary
    rows = json.loads((run / "metrics.json").read_text())["metrics"]
    asr = next(r for r in rows if r["metric"] == "attack_success_rate" and r["group"] == "all")
    assert (asr["judge"], asr["subset"], asr["value"], asr["n"]) == ("dummy", "dummy_subset", 1.0, 3)
    assert (asr["axis"], asr["reference_axis"], asr["stand_in"]) == ("harm", "refusal", True)
    assert json.loads((run / "manifest.json").read_text())["judge_axes"] == {"dummy": "harm"}

    out = tmp_path / "report"
    assert main(["report", str(run), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    headline_table = page.split('id="summary-table"')[1].split("</table>")[0]
    assert 'data-subset="dummy_subset" data-metric="attack_success_rate"' in headline_table
    assert "dummy subset label" in headline_table and "stand-in for refusal" in headline_table
    # the error rate is not a headline metric: it sits in the other table, below
    assert 'data-metric="error_rate"' not in headline_table
    assert 'data-metric="error_rate"' in page.split('id="summary-other-table"')[1]


def test_the_registries_are_taken_back_after_the_plugin_test() -> None:
    assert "dummy" not in BENCHMARKS and "dummy" not in JUDGES and "dummy" not in BACKENDS


# name -> the modules allowed to spell it as a string: its own module (the registry modules always may)
OWN_MODULES = {
    "vlsafe": ("benchmarks/vlsafe.py",),
    "sst2": ("benchmarks/sst2.py",),
    "agnews": ("benchmarks/agnews.py",),
    "gsm8k": ("benchmarks/gsm8k.py",),
    "alpaca-eval": ("benchmarks/alpaca_eval.py",),
    "figstep": ("benchmarks/figstep.py",),
    "figstep-tiny": ("benchmarks/figstep.py",),
    "jailbreakllms": ("benchmarks/jailbreakllms.py",),
    "mm-safetybench": ("benchmarks/mm_safetybench.py",),
    "spa-vl-harmeval": ("benchmarks/spa_vl.py",),
    "advbench-suffix": ("benchmarks/advbench.py",),
    "wildguard": ("judges/wildguard.py",),
    "llama-guard": ("judges/llama_guard.py",),
    "llm-judge": ("judges/llm_judge.py",),
    "cascade": ("judges/cascade.py",),
    "vllm": ("generation/vllm_backend.py",),
}
REGISTRY_MODULES = ("benchmarks/__init__.py", "judges/__init__.py", "generation/__init__.py")


def test_registered_names_are_spelled_only_in_their_own_module_and_the_registries() -> None:
    sources = {path.relative_to(SRC).as_posix(): path.read_text() for path in SRC.rglob("*.py")}
    strays = {
        name: sorted(
            where
            for where, text in sources.items()
            if re.search(rf"[\"']{re.escape(name)}[\"']", text) and where not in (*own, *REGISTRY_MODULES)
        )
        for name, own in OWN_MODULES.items()
    }
    assert {name: where for name, where in strays.items() if where} == {}
    for name in OWN_MODULES:  # the names are real: each is registered, or a subset of a registered benchmark
        assert name in BENCHMARKS or name in JUDGES or name in BACKENDS or subset_info(name) is not None


def test_every_benchmark_declares_the_subsets_its_module_names() -> None:
    from vlguard.benchmarks import (
        advbench,
        beavertails,
        figstep,
        jailbreakllms,
        mm_safetybench,
        spa_vl,
        xstest,
    )

    declared = {name: {s.name for s in entry.subsets} for name, entry in BENCHMARKS.items()}
    assert declared["xstest"] == {xstest.SAFE_SUBSET, xstest.UNSAFE_SUBSET}
    assert declared["advbench"] == {advbench.VANILLA_SUBSET, advbench.SUFFIX_SUBSET}
    assert declared["advbench-suffix"] == {advbench.SUFFIX_SUBSET}
    assert declared["jailbreakllms"] == {jailbreakllms.ORIG_SUBSET, jailbreakllms.TEMPLATE_SUBSET}
    assert declared["mm-safetybench"] == set(mm_safetybench.VARIANTS)
    assert declared["figstep"] == declared["figstep-tiny"] == {figstep.SUBSET}
    assert declared["spa-vl-harmeval"] == {spa_vl.SUBSET}
    assert declared["beavertails"] == {beavertails.SUBSET}
    for name, entry in BENCHMARKS.items():
        if entry.task is not None:  # task benchmarks: the subset is the task's name
            assert declared[name] == {resolve(entry.task).name} == {name}


def test_every_headline_metric_is_a_registered_metric_and_every_entry_target_resolves() -> None:
    assert {metric for _, metric in headline_metrics()} <= set(METRICS)
    for registry in (BENCHMARKS, JUDGES, BACKENDS):
        for name, entry in registry.items():
            assert callable(entry.load()), name
    for entry in BENCHMARKS.values():
        for target in (entry.task, entry.scorer, *entry.checks):
            if target is not None:
                assert resolve(target) is not None


def test_metrics_rows_carry_the_judges_axis_and_flag_stand_ins() -> None:
    samples = [
        Sample("a:s", "b", "s", "p", None, None, None, None, True, "a"),
        Sample("b:t", "b", "t", "p", None, "ref", None, None, False, "b"),
    ]
    judgments = {
        "refusal": [Judgment("a:s", "refusal", "compliance", {}), Judgment("b:t", "refusal", "refusal", {})],
        "pair": [Judgment("a:s", "pair", "win", {}), Judgment("b:t", "pair", "loss", {})],
    }
    metrics = compute_metrics(
        samples,
        judgments,
        run={},
        axes={"refusal": "refusal", "pair": "win_rate"},
        reference_axes={"s": "harm", "t": "refusal"},
    )
    by = {(r["judge"], r["subset"], r["metric"]): r for r in metrics["metrics"] if r["group"] == "all"}
    assert by[("refusal", "s", "attack_success_rate")]["stand_in"] is True
    assert by[("refusal", "t", "over_refusal_rate")]["stand_in"] is False
    # a pairwise row is another metric, never a stand-in for the safety one
    assert by[("pair", "s", "helpfulness_win_rate")]["axis"] == "win_rate"
    assert by[("pair", "s", "helpfulness_win_rate")]["stand_in"] is False
    assert all(row["metric"] in METRICS for row in metrics["metrics"])
    assert (
        is_stand_in("refusal", "harm")
        and not is_stand_in("harm", "harm")
        and not is_stand_in("accuracy", "harm")
    )


def test_a_judges_options_refine_its_axis() -> None:
    assert judge_axis("wildguard", make_judge("wildguard")) == "refusal"
    assert judge_axis("wildguard", make_judge("wildguard", view="harm")) == "harm"
    assert judge_axis("llama-guard") == "harm" and judge_axis("refusal", make_judge("refusal")) == "refusal"
    for mode, axis in (("pairwise", "win_rate"), ("harm", "harm"), ("refusal", "refusal")):
        assert judge_axis("llm-judge", make_judge("llm-judge", mode=mode, api_key_env="NO_SUCH_KEY")) == axis
    assert judge_axis("no-such-judge") is None


def test_the_cascades_default_model_judge_is_its_entry_option() -> None:
    cascade = make_judge("cascade")
    assert cascade.describe()["model_judge"]["judge"] == "wildguard"
    assert JUDGES["cascade"].options == {"model_judge": "wildguard"}


def test_an_unknown_name_lists_the_known_ones() -> None:
    for registry, kind in ((BENCHMARKS, "benchmark"), (JUDGES, "judge"), (BACKENDS, "backend")):
        with pytest.raises(
            ConfigError, match=rf"unknown {kind} 'nope'; known: .*{next(iter(sorted(registry)))}"
        ):
            registry.entry("nope")


def test_a_bare_factory_replaces_a_target_and_keeps_the_names_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    def stub(model: str, **kwargs: object) -> None:
        raise AssertionError("not called")

    monkeypatch.setitem(BACKENDS, "hf", stub)  # type: ignore[arg-type]
    assert BACKENDS["hf"].target is stub and BACKENDS["hf"].local_weights
    with pytest.raises(ConfigError, match="has no option 'nope'"):
        check_backend_options("hf", {"nope": 1})  # the real options still apply
    monkeypatch.setitem(BACKENDS, "fresh", stub)  # type: ignore[arg-type]
    assert BACKENDS["fresh"] == BackendEntry(stub, "")
    with pytest.raises(TypeError, match="register benchmark 'x' as a BenchmarkEntry"):
        BENCHMARKS["x"] = stub  # type: ignore[assignment]
    with pytest.raises(TypeError, match="holds BenchmarkEntry entries, not a BackendEntry"):
        BENCHMARKS["x"] = BackendEntry(stub, "")  # type: ignore[assignment]


def test_a_benchmarks_pre_model_checks_run_before_any_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vlguard.data.sample import sample_dataset_dir
    from vlguard.errors import VLGuardError
    from vlguard.evaluate import EvalConfig, run_generation

    def refuse_all(data: object, samples: object, **settings: object) -> None:
        raise VLGuardError(f"checked before the model: {sorted(settings)}")

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the benchmark's checks")

    entry = BENCHMARKS["vlguard-test"]
    monkeypatch.setitem(BENCHMARKS, "vlguard-test", BenchmarkEntry(
        entry.target, entry.description, image_mode="none", axis="refusal", subsets=entry.subsets,
        checks=(refuse_all,),
    ))  # fmt: skip
    monkeypatch.setitem(BACKENDS, "hf", no_model)  # type: ignore[arg-type]
    config = EvalConfig(model="tiny", data=str(sample_dataset_dir()), limit=2, run_dir=str(tmp_path / "r"))
    with pytest.raises(
        VLGuardError, match=r"checked before the model: \['allow_blank_substitutes', 'image_mode'\]"
    ):
        run_generation(config, progress=False)


def test_subsets_without_a_label_show_their_own_name() -> None:
    from vlguard.report.tables import subset_label

    assert subset_label("unsafe") == "unsafe (harmful image)" and subset_label("vlsafe") == "vlsafe"
    assert subset_label("not-a-subset") == "not-a-subset"
    assert BENCHMARKS["vlsafe"].reference_axis("vlsafe") == "harm"
    assert (
        BenchmarkEntry(
            "m:f", "", image_mode="none", axis="harm", subsets=(Subset("x", axis="refusal"),)
        ).reference_axis("x")
        == "refusal"
    )


def test_the_extending_guide_shows_the_real_additions_whole() -> None:
    """docs/extending.md's diffs are the real modules and registry entries (so the guide cannot go stale)."""
    root = SRC.parents[1]
    blocks = re.findall(r"```diff\n(.*?)```", (root / "docs" / "extending.md").read_text(), re.DOTALL)
    assert len(blocks) == 3
    for block in blocks:
        files = re.split(r"^--- \S+\n\+\+\+ b/(\S+)\n", block, flags=re.MULTILINE)[1:]
        for path, hunk in zip(files[::2], files[1::2], strict=True):
            lines = [line for line in hunk.splitlines() if not line.startswith("@@")]
            added = "\n".join(line[1:] for line in lines if line.startswith("+"))
            shown = "\n".join(line[1:] for line in lines)  # context and added lines, in file order
            text = (root / path).read_text()
            if all(line.startswith("+") for line in lines):  # a new file: all of it
                assert added + "\n" == text, path
            else:  # the registry entry, with its context
                assert added and shown in text, path
