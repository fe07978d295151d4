"""The method contract: registry, loss outputs, stages, and methods combined as a weighted sum."""

from __future__ import annotations

import pytest
import torch

from depthkd.distill import METHODS, CombinedMethod, LossOutput, OptimizerSpec, Stage, build_method, get_method, register_method
from depthkd.distill.supervised import Supervised
from depthkd.errors import ConfigError
from depthkd.models.outputs import StudentOutput, TeacherOutput


def test_registry_knows_the_baselines_and_lists_names_on_error() -> None:
    assert {"supervised", "response", "feature"} <= set(METHODS)
    assert get_method("supervised") is Supervised
    with pytest.raises(ConfigError, match="unknown method 'tiekd'.*supervised"):
        get_method("tiekd")
    with pytest.raises(ConfigError, match="taken"):
        register_method("supervised")(type("Other", (Supervised,), {}))


def test_loss_output_sums_scales_and_names_the_first_bad_term() -> None:
    out = LossOutput.from_terms({"a": torch.tensor(1.0), "b": torch.tensor(2.0)})
    assert out.total.item() == 3.0
    scaled = out.scaled(0.5, "m/")
    assert scaled.total.item() == 1.5 and scaled.terms["m/b"].item() == 1.0
    assert out.first_nonfinite() is None
    bad = LossOutput.from_terms({"a": torch.tensor(1.0), "b": torch.tensor(float("inf"))})
    assert bad.first_nonfinite() == "b"


def test_stage_rules() -> None:
    with pytest.raises(ConfigError, match="manual"):
        Stage("x", optimizers=(OptimizerSpec(), OptimizerSpec()))
    with pytest.raises(ConfigError, match="steps"):
        Stage("x", steps=0)


def test_combined_method_weights_and_prefixes_terms() -> None:
    combined = CombinedMethod([build_method("response", {"loss": "mse"}), build_method("supervised")], [2.0, 0.5])
    assert combined.name == "response+supervised"
    assert combined.needs_teacher and combined.needs_ground_truth
    teacher = torch.full((1, 1, 4, 4), 2.0)
    gt = torch.full((1, 1, 4, 4), 1.0)
    student = torch.full((1, 1, 4, 4), 3.0)
    batch = {"image": torch.rand(1, 3, 4, 4), "depth": gt}
    out = combined.loss(batch, StudentOutput(depth=student), TeacherOutput(depth=teacher, kind="metric_depth"), Stage())
    assert out.terms.keys() == {"response/mse", "supervised/silog"}
    assert out.terms["response/mse"].item() == pytest.approx(2.0 * 1.0)
    # constant log-ratio ln 3: SILog = 10 * sqrt(0.15) * ln 3
    assert out.terms["supervised/silog"].item() == pytest.approx(0.5 * 10 * 0.15**0.5 * torch.log(torch.tensor(3.0)).item(), rel=1e-4)
    only_lead = combined.loss(
        batch, StudentOutput(depth=student), TeacherOutput(depth=teacher, kind="metric_depth"), Stage(combine=False)
    )
    assert only_lead.terms.keys() == {"response/mse"}


def test_supervised_requires_ground_truth() -> None:
    with pytest.raises(Exception, match="ground-truth"):
        build_method("supervised").loss({"image": torch.rand(1, 3, 4, 4)}, StudentOutput(depth=torch.ones(1, 1, 4, 4)), None, Stage())
