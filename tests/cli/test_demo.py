"""``depthkd demo`` end to end on a tiny budget with a tiny transformer teacher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from depthkd.cli import main
from depthkd.comparison import Budget, Contender, contender_recipe, gap_closed_share
from depthkd.demo import DemoSettings, gap_verdict, run_demo
from depthkd.models import build_student, save_student



@pytest.mark.slow
def test_demo_writes_the_report(tmp_path, tiny_depth_anything_options):
    torch.manual_seed(0)
    tiny_vit = build_student(arch="depth-anything", arch_options=tiny_depth_anything_options)
    teacher = save_student(tiny_vit, tmp_path / "vit.safetensors")
    out = tmp_path / "report"
    settings = DemoSettings(steps=2, train_images=16, test_images=4, val_images=4, samples=2)
    report = run_demo(out, teacher=f"torch:{teacher}", settings=settings, setting="kitti-like")

    text = report.read_text()
    assert text.startswith("# depthkd demo: the `kitti-like` setting")
    assert "LiDAR labels" in text and "`sim-pool`" in text and "Garg crop" in text
    assert "| teacher `torch:" in text and "| student alone (`mobilenetv2_100`)" in text
    assert "| student + tie-kd (`mobilenetv2_100`)" in text and "![samples](samples.png)" in text
    for name in ("samples.png", "curves.png", "student-kd.onnx", "results.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    labels = [row["label"] for row in results["rows"]]
    assert len(labels) == 3 and results["info"]["steps"] == 2 and results["info"]["size"] == [128, 416]
    alone, distilled = results["rows"][1:]
    assert alone["method"] == "supervised" and distilled["method"] == "tie-kd"
    assert distilled["gmacs"] > 0 and distilled["params_m"] > 0
    assert results["info"]["latency"]["student_ms"] > 0 and results["info"]["latency"]["teacher_ms"] > 0


def test_contender_recipe_applies_the_budget(tmp_path):
    budget = Budget(train="sim:indoor?num=8&size=64x96&seed=0", test="sim:indoor?num=4&size=64x96&seed=9", steps=50)
    config = contender_recipe(Contender("DisDepth + GT", "disdepth-sim"), budget, 3, tmp_path)
    assert config.data.train == budget.train and config.data.val == budget.test
    assert config.trainer.max_steps == 50 and config.run.seed == 3
    assert config.run.path == tmp_path / "disdepth-gt-s3"
    options = config.method.options
    assert (options.warmup_steps, options.acclimation_steps, options.distill_steps) == (20, 10, 30)
    own = contender_recipe(Contender("data-free", "datafree-sim", own_data=True), budget, 0, tmp_path)
    assert own.data.train.startswith("sim:ood_shapes+ood_clutter")


def test_gap_closed_share():
    assert gap_closed_share(alone=0.20, distilled=0.15, teacher=0.10) == pytest.approx(0.5)
    assert gap_closed_share(alone=0.10, distilled=0.15, teacher=0.12) is None  # no gap to close
    assert "no gap" in gap_verdict(None) and "worse" in gap_verdict(-0.2)
    assert "half" in gap_verdict(0.6) and "less than half" in gap_verdict(0.3)


def test_cli_rejects_an_unknown_method(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--method", "nope"])
    assert "invalid choice" in capsys.readouterr().err


def test_setting_contenders_share_the_world_and_the_alone_row_sees_only_labels():
    from depthkd.comparison import SETTINGS, setting_contenders

    train = "folder:data/rooms?labels=0.05"
    contenders = setting_contenders(SETTINGS["label-scarce"], train)
    budget = Budget(train=train, test="sim:indoor?num=4&size=64x96&seed=9", steps=10)
    configs = {key: contender_recipe(c, budget, 0, Path("runs")) for key, (c, _) in contenders.items()}
    assert configs["alone"].data.train == f"{train}&unlabelled=drop" and configs["alone"].teacher.spec is None
    assert configs["alone"].method.name == "supervised" and configs["alone"].student.head == "regression"
    for key, config in configs.items():
        assert config.student.init_encoder == "sim-pool", key  # every row starts from the same encoder
        assert config.eval.protocol == "sim_indoor", key
        if key != "alone":
            assert config.data.train == train and config.teacher.spec == "sim-vit", key
    assert [a.name for a in configs["tie-kd-gt"].method.add] == ["supervised"] and not configs["tie-kd"].method.add
    assert [a.name for a in configs["response-si"].method.add] == ["supervised"]  # labels where they exist
    kitti = {key: contender_recipe(c, budget, 0, Path("runs")) for key, (c, _) in
             setting_contenders(SETTINGS["kitti-like"], "folder:streets").items()}
    assert kitti["alone"].data.train == "folder:streets"  # every image has (sparse) labels
    assert not kitti["response-ssim"].method.add and kitti["disdepth"].student.max_depth == 80.0
    assert kitti["disdepth"].teacher.spec == "sim-vit-outdoor" and kitti["disdepth"].data.crop == (96, 320)


@pytest.mark.slow
def test_rows_trained_side_by_side_equal_rows_trained_one_after_the_other(tmp_path):
    """Each side-by-side row is the row train_contender trains alone (same recipe, seed, weights)."""
    from safetensors.torch import load_file

    from depthkd.comparison import train_contender, train_side_by_side

    budget = Budget(train="sim:indoor?num=8&size=32x48&seed=0", test="sim:indoor?num=2&size=32x48&seed=9", steps=3,
                    val_points=1)
    tiny = ["student.backbone=mobilenetv2_050", "student.init_encoder=null", "data.crop=null"]
    rows = {"a": (Contender("row a", "supervised-sim"), tiny),
            "b": (Contender("row b", "supervised-sim", ("optim.lr=3e-3",)), tiny)}
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        together = train_side_by_side(rows, budget, 0, tmp_path / "together", size=(32, 48), poll_s=0.2)
        torch.set_num_threads(1)  # what each side-by-side worker had
        apart = {name: train_contender(c, budget, 0, tmp_path / "apart", (32, 48), extra)
                 for name, (c, extra) in rows.items()}
    finally:
        torch.set_num_threads(threads)
    assert list(together) == ["a", "b"]
    for name in rows:
        a, b = load_file(str(together[name].student_path)), load_file(str(apart[name].student_path))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
        assert together[name].metrics == apart[name].metrics
    assert together["a"].metrics != together["b"].metrics  # two different rows, not one trained twice
