"""Sparse and holed ground truth (simulated LiDAR and Kinect) survives the data pipeline unblended."""

from __future__ import annotations

import pytest
import torch

from depthkd.data import RandomRotation, Resize, collate, dataset_from_spec, default_train_transform
from depthkd.data.spec import parse_spec
from depthkd.errors import ConfigError
from depthkd.metrics import compute_metrics

SPECS = {
    "lidar": "sim:outdoor?num=4&size=96x320&seed=11&gt=lidar",
    "kinect": "sim:indoor?num=4&size=96x128&seed=11&gt=kinect",
}


def measured_values(depth: torch.Tensor) -> torch.Tensor:
    return depth[depth > 0].unique()


@pytest.mark.parametrize("gt", sorted(SPECS))
def test_every_transformed_measurement_is_one_the_sensor_made(gt):
    """Resizing, cropping, rotation and flips pick measurements, never blend one with a hole or a
    neighbour: every non-zero depth after the transform is a value the sensor wrote."""
    data = dataset_from_spec(SPECS[gt])
    generator = torch.Generator().manual_seed(0)
    transforms = [
        default_train_transform((64, 96), rotation=5.0, generator=generator),
        Resize((48, 160)),
        Resize((192, 640)),
        lambda item: RandomRotation.rotate(item, 7.0),
    ]
    for index in range(len(data)):
        item = data[index]
        before = measured_values(item["depth"])
        for transform in transforms:
            out = transform(item)
            after = measured_values(out["depth"])
            assert after.numel() > 0
            assert bool(torch.isin(after, before).all()), (gt, transform)
            # the exact depth that comes along moves with it, pixel for pixel
            both = (out["depth"] > 0) & (out["dense_depth"] > 0)
            assert float((out["depth"] - out["dense_depth"]).abs()[both].median()) < 0.1


def test_sensor_items_batch_and_keep_their_density():
    lidar = dataset_from_spec(SPECS["lidar"])
    dense = dataset_from_spec(SPECS["lidar"].replace("gt=lidar", "gt=dense"))
    batch = collate([lidar[i] for i in range(4)])
    assert batch["depth"].shape == batch["dense_depth"].shape == (4, 1, 96, 320)
    assert 0.01 < float((batch["depth"] > 0).float().mean()) < 0.1
    assert torch.equal(batch["image"], collate([dense[i] for i in range(4)])["image"])
    assert torch.equal(batch["dense_depth"], collate([dense[i] for i in range(4)])["depth"])


def test_evaluation_scores_only_the_measured_pixels():
    item = dataset_from_spec(SPECS["lidar"])[0]
    pred = item["dense_depth"].clone()
    pred[item["depth"] == 0] = 50.0  # wrong wherever the sensor measured nothing: not scored
    metrics = compute_metrics(pred, item["depth"], protocol="sim_outdoor")
    assert metrics["abs_rel"] < 0.05  # the LiDAR's own noise and parallax against the exact depth
    assert metrics["d1"] > 0.98
    assert compute_metrics(pred, item["dense_depth"], protocol="sim_outdoor")["abs_rel"] > 1.0


def test_gt_in_data_specs():
    assert parse_spec(SPECS["lidar"]).params["gt"] == "lidar"
    with pytest.raises(ConfigError, match="gt='kinect' does not fit the outdoor domain; outdoor takes gt=dense, lidar"):
        dataset_from_spec("sim:outdoor?num=2&size=32x96&gt=kinect")
    with pytest.raises(ConfigError, match="unknown ground truth gt='radar'"):
        dataset_from_spec("sim:indoor?num=2&size=32x40&gt=radar")
    with pytest.raises(ConfigError, match="gt='lidar' does not fit the ood_shapes domain"):
        dataset_from_spec("sim:ood_shapes+ood_clutter?num=2&size=32x40&gt=lidar")


def test_label_parameters_do_not_change_the_image_source_or_the_teacher_cache():
    from types import SimpleNamespace

    from depthkd.config import load_recipe
    from depthkd.data.spec import image_source
    from depthkd.engine.inputs import teacher_cache_dir

    base = "sim:indoor?num=20&size=32x40&seed=3"
    assert image_source(base + "&gt=kinect&labels=0.1&labels_seed=4") == image_source(base)
    assert image_source("sim:indoor?seed=3&size=32x40&num=20") == image_source(base)  # canonical order
    assert image_source(base.replace("seed=3", "seed=4")) != image_source(base)
    teacher = SimpleNamespace(teacher_id="t", preprocess_id="p")
    dirs = []
    for spec in (base, base + "&gt=kinect", base + "&gt=kinect&labels=5", base.replace("num=20", "num=21")):
        config = load_recipe("nyu-like")
        config.data.train = spec
        dirs.append(teacher_cache_dir(config, teacher))
    assert dirs[0] == dirs[1] == dirs[2] != dirs[3]
