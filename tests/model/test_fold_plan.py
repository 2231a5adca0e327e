"""Which blocks run folded (idface.model.fold_plan): the rule on injected timings, IDFACE_FOLD, the
timing cache in the weights cache (idface.weights.timing_choice), the measurement itself on the
tiny preset, and that a mixed plan (some blocks folded, some plain) is still the same function."""

from __future__ import annotations

import json

import pytest
import torch

from idface.errors import InputError
from idface.model import IdFaceModel, get_config
from idface.model.fold_plan import (FOLD_ENV, SELF_ATTENTION_TOKENS, MEASURE_TOKENS, FoldPlan, StageTiming,
                                    choose_stages, fold_setting, measure_stages, plan_folding, plan_key)
from idface.model.folding import FoldedBlock
from idface.model.generator import ContextKV
from idface.weights import (cpu_identity, forget_timing_choices, save_timing_choice, timing_choice,
                            timing_choice_key, timing_choices_path)
from test_folding import context_and_mask, randomise_constants


@pytest.fixture
def timing_cache(tmp_path, monkeypatch):
    """A fresh weights cache folder, IDFACE_FOLD=auto, and no choice remembered by this process."""
    monkeypatch.setenv("IDFACE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(FOLD_ENV, "auto")
    forget_timing_choices()
    yield tmp_path
    forget_timing_choices()


def timings(*pairs: tuple[float, float]) -> list[StageTiming]:
    return [StageTiming(plain, folded, 4096) for plain, folded in pairs]


def test_choose_stages_folds_where_folded_is_not_slower():
    # Zen 5 bf16 pattern: folding slower at the self-attention stages, faster at the wide ones
    assert choose_stages(timings((0.01, 0.012), (0.1, 0.09), (0.5, 0.62), (0.9, 0.4), (0.3, 0.31))) == (
        False, True, False, True, False)
    assert choose_stages(timings((0.2, 0.2))) == (True,)          # a tie folds (fewer FLOPs)
    assert choose_stages([]) == ()


@pytest.mark.parametrize("value,expected", [("auto", "auto"), ("on", "on"), ("off", "off"), (" ON ", "on"),
                                            ("", "auto")])
def test_fold_setting_accepts_auto_on_off(value, expected):
    assert fold_setting(value) == expected


@pytest.mark.parametrize("value", ["yes", "1", "folded", "of"])
def test_a_bad_fold_setting_is_one_clear_error(value, monkeypatch):
    monkeypatch.setenv(FOLD_ENV, value)
    with pytest.raises(InputError) as err:
        fold_setting()
    message = str(err.value)
    assert "\n" not in message and FOLD_ENV in message and repr(value) in message
    assert "auto, on, off" in message


def tiny_generator():
    torch.manual_seed(0)
    model = IdFaceModel("tiny").eval()
    randomise_constants(model.generator)
    return model


@pytest.mark.parametrize("setting,expected", [("on", True), ("off", False)])
def test_on_and_off_need_no_timing(setting, expected, monkeypatch, tmp_path):
    monkeypatch.setenv(FOLD_ENV, setting)
    monkeypatch.setenv("IDFACE_CACHE_DIR", str(tmp_path))
    model = tiny_generator()

    def measure():
        raise AssertionError("IDFACE_FOLD=on/off must not time anything")

    plan = plan_folding(model.generator, "fp32", model.config, measure=measure)
    assert plan.stages == (expected,) * model.config.num_stages
    assert plan.decided_by == f"IDFACE_FOLD={setting}" and plan.timings is None
    assert not timing_choices_path().exists()


def test_auto_times_once_then_reads_the_cache(timing_cache):
    model = tiny_generator()
    calls = []

    def measure():
        calls.append(1)
        return timings((1.0, 2.0), (2.0, 1.0), (1.0, 1.0), (3.0, 2.9))

    first = plan_folding(model.generator, "fp32", model.config, measure=measure)
    assert first.stages == (False, True, True, True) and first.decided_by == "timed" and calls == [1]
    # the file holds the timings under this machine's key
    stored = json.loads(timing_choices_path().read_text())
    key = plan_key(model.config, "fp32")
    assert list(stored) == [key]
    assert [t["plain_s"] for t in stored[key]["timings"]] == [1.0, 2.0, 1.0, 3.0]
    assert f"threads={torch.get_num_threads()}" in key and f"torch={torch.__version__}" in key
    assert cpu_identity()["model_name"] in key and "precision=fp32" in key and "size=64" in key
    # a new process (nothing remembered) reads the file instead of timing again
    forget_timing_choices()
    again = plan_folding(model.generator, "fp32", model.config, measure=measure)
    assert again.stages == first.stages and again.decided_by == "cached timing" and calls == [1]
    assert again.timings == first.timings
    # another precision is another key: timed again
    plan_folding(model.generator, "bf16", model.config, measure=measure)
    assert calls == [1, 1]
    assert len(json.loads(timing_choices_path().read_text())) == 2


def test_the_cache_key_tells_sizes_and_shapes_apart():
    tiny = get_config("tiny")
    keys = {plan_key(tiny, "fp32"), plan_key(tiny, "bf16"), plan_key(get_config("demo"), "fp32"),
            plan_key(get_config("tiny", ff_mult=4), "fp32"), plan_key(get_config("tiny", image_size=128), "fp32")}
    assert len(keys) == 5
    assert plan_key(tiny, "fp32") == plan_key(get_config("tiny"), "fp32")


def test_a_damaged_or_mismatched_cache_entry_is_timed_again(timing_cache):
    model = tiny_generator()
    timing_choices_path().write_text("{ half a file")
    plan = plan_folding(model.generator, "fp32", model.config,
                        measure=lambda: timings((1, 2), (1, 2), (1, 2), (1, 2)))
    assert plan.decided_by == "timed" and plan.stages == (False,) * 4
    forget_timing_choices()                            # an entry for another number of stages
    save_timing_choice(plan_key(model.config, "fp32"), {"timings": [{"plain_s": 1, "folded_s": 0, "tokens": 1}]})
    forget_timing_choices()
    plan = plan_folding(model.generator, "fp32", model.config,
                        measure=lambda: timings((2, 1), (2, 1), (2, 1), (2, 1)))
    assert plan.decided_by == "timed" and plan.stages == (True,) * 4


def test_timing_choices_survive_an_unwritable_cache_folder(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("IDFACE_CACHE_DIR", str(blocker))
    forget_timing_choices()
    key = timing_choice_key("test", size=1)
    save_timing_choice(key, {"x": 1})                   # cannot write: kept for this process
    assert timing_choice(key) == {"x": 1}
    forget_timing_choices()
    assert timing_choice(key) is None


def test_measure_stages_times_both_forms_of_every_block(monkeypatch):
    import idface.model.fold_plan as fold_plan

    monkeypatch.setattr(fold_plan, "MEASURE_RUNS", (1, 2))      # the sizes matter here, not the times
    model = tiny_generator()
    config = model.config
    result = measure_stages(model.generator, torch.float32, config)
    assert len(result) == config.num_stages
    for i, t in enumerate(result):
        side = config.base_resolution * 2**i
        cap = SELF_ATTENTION_TOKENS if config.self_attention[i] else MEASURE_TOKENS
        assert t.tokens == min(side * side, cap) and t.plain_s > 0 and t.folded_s > 0


def test_plan_describes_itself():
    plan = FoldPlan((False, True), "bf16", "timed", tuple(timings((1.0, 2.0), (0.5, 0.25))))
    assert plan.describe([16, 32]) == "bf16: 16^2 plain, 32^2 folded (timed)"
    assert plan.to_json()["folded_stages"] == [False, True]
    assert plan.to_json()["stage_timings_ms"][1] == {"plain": 500.0, "folded": 250.0, "tokens": 4096}


@pytest.mark.parametrize("stages", [(True, False, True, False), (False, True, False, True), (False,) * 4])
def test_a_mixed_plan_is_the_same_function(stages):
    """Some blocks folded, the others plain with their ContextKV: the same image as the plain
    generator (float32 tolerance of tests/model/test_folding.py), and each block in its form."""
    model = tiny_generator()
    with torch.no_grad():
        context, mask = context_and_mask(model, 2, torch.float32)
        ref, ref_layers = model.generator(mask, context, return_attention=True)
        blocks = model.generator.fold(context, stages)
        out, layers = model.generator(mask, folded=blocks, return_attention=True)
    assert [isinstance(b, FoldedBlock) for b in blocks] == list(stages)
    assert all(isinstance(b, ContextKV) for b, f in zip(blocks, stages) if not f)
    assert float((out - ref).abs().max()) < 1e-4
    for layer, ref_layer in zip(layers, ref_layers):
        assert float((layer.probs - ref_layer.probs).abs().max()) < 1e-4
    with pytest.raises(ValueError, match="fold choices"):
        model.generator.fold(context, stages[:2])
