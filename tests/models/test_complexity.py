"""Parameter and MAC counts against hand counts."""

from __future__ import annotations

from torch import nn

from depthkd.bench import count_macs, count_parameters


def tiny_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8*3*3*3 + 8 = 224 params
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: 8*1*3*3 + 8 = 80 params
        nn.BatchNorm2d(8),  # 16 params (running stats are buffers)
        nn.Conv2d(8, 4, 1, bias=False),  # 32 params
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),  # 50 params
    )


def test_count_parameters_hand_count() -> None:
    net = tiny_net()
    assert count_parameters(net) == 224 + 80 + 16 + 32 + 50
    net[0].requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == 80 + 16 + 32 + 50


def test_count_macs_hand_count() -> None:
    h, w = 16, 20
    pixels = h * w
    expected = pixels * 8 * 3 * 9 + pixels * 8 * 9 + pixels * 4 * 8 + 4 * 10
    net = tiny_net().train()
    assert count_macs(net, input_size=(h, w)) == expected
    assert count_macs(net, input_size=(h, w), batch=3) == 3 * expected
    assert net.training  # mode restored


def test_count_macs_runs_in_eval_mode() -> None:
    seen: list[bool] = []
    net = tiny_net()
    net.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    count_macs(net, input_size=(4, 4))
    assert seen == [False]
