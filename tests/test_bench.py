"""`python -m idface bench --json` runs and reports every figure (on the tiny preset here; the
paper-256 numbers come from running the command, not from a test)."""

import json

import pytest

from idface.cli import main


@pytest.mark.slow
def test_bench_json_reports_every_figure(capsys, tmp_path, monkeypatch):
    from idface.weights import forget_timing_choices

    # the pipeline mode as the app would decide it on a machine seen for the first time: timed
    monkeypatch.setenv("IDFACE_FOLD", "auto")
    monkeypatch.setenv("IDFACE_CACHE_DIR", str(tmp_path))
    forget_timing_choices()
    try:
        code = main(["bench", "--preset", "tiny", "--runs", "2", "--warmup", "0", "--peak-size", "256",
                     "--pipeline-precision", "fp32", "--json"])
    finally:
        forget_timing_choices()
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["preset"] == "tiny"
    assert set(report["generator"]) == {"fp32", "bf16-autocast", "bf16", "fp32-folded", "bf16-folded", "pipeline"}
    plan = report["pipeline_mode"]
    assert plan["precision"] == "fp32" and plan["decided_by"] == "timed"
    assert len(plan["folded_stages"]) == len(plan["stage_timings_ms"]) == 4
    for folded, t in zip(plan["folded_stages"], plan["stage_timings_ms"]):
        if t["folded"] != t["plain"]:          # printed equal: the exact timings decided (ties fold)
            assert folded == (t["folded"] < t["plain"])
    assert plan["same_as"] == {(True,) * 4: "fp32-folded", (False,) * 4: "fp32"}.get(tuple(plan["folded_stages"]))
    assert report["generator"]["pipeline"]["max_abs_diff_vs_fp32"] < 1e-4       # fp32, exact algebra
    assert report["fastest_mode"] != "pipeline"
    assert report["pipeline_over_fastest"] == pytest.approx(
        report["generator"]["pipeline"]["median_ms"] / report["generator"][report["fastest_mode"]]["median_ms"],
        rel=0.01)
    roofline = report["roofline"]
    assert roofline["peak_gflops"] == max(report["matmul_peak_gflops"].values())
    assert roofline["ms"] == pytest.approx(roofline["folded_gflop"] / roofline["peak_gflops"] * 1e3, rel=0.01)
    assert roofline["pipeline_over_roofline"] > 0
    for trials in report["matmul_peak_trials"].values():      # one trial per round
        assert trials["trials"] == 2 and 0 < trials["size"] <= 256
    assert report["generator"]["fp32-folded"]["max_abs_diff_vs_fp32"] < 1e-4    # exact algebra
    assert report["generator"]["bf16-folded"]["psnr_vs_fp32_db"] > 30
    assert 0 < report["gflop_per_image"]["generator_folded"] <= report["gflop_per_image"]["generator_cached_context"]
    for mode, r in report["generator"].items():
        assert r["median_ms"] > 0 and r["achieved_gflops"] > 0 and 0 < r["achieved_over_peak"]
    assert report["generator"]["fp32"]["max_abs_diff_vs_fp32"] == 0
    assert report["generator"]["bf16"]["psnr_vs_fp32_db"] > 30
    assert report["gflop_per_image"]["generator_cached_context"] > 0
    assert report["matmul_peak_gflops"]["fp32"] > 0 and report["matmul_peak_gflops"]["bf16"] > 0
    assert report["generator"]["bf16"]["achieved_over_peak_cpu"] > 0
    assert report["style_encoder"]["fp32"]["median_ms"] > 0
    assert report["parameters"]["generator"] > report["parameters"]["mask_embedder"] > 0


def test_stage_bench_reports_plain_and_folded_per_stage():
    """scripts/bench_generator_stages.py: per stage, plain and folded transformer-block times and
    the attention kernel where a stage has self-attention (tiny preset: fast)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_generator_stages.py"
    done = subprocess.run([sys.executable, str(script), "--preset", "tiny", "--runs", "1", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    from idface.model import get_config

    config = get_config("tiny")
    assert [s["resolution"] for s in report["stages"]] == [config.base_resolution * 2**i for i in range(config.num_stages)]
    for s, has_attention in zip(report["stages"], config.self_attention):
        assert s["transformer_plain_ms"] > 0 and s["transformer_folded_ms"] > 0
        assert (s["self_attention_kernel_ms"] is not None) == has_attention
    assert report["sum_folded_ms"] > 0 and report["matmul_peak_gflops"] > 0
