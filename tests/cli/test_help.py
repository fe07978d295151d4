"""The command's own surface: fast help (no heavy imports), every option explained, bad numbers refused early."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from depthkd import __version__
from depthkd.cli import build_parser, main

HEAVY_MODULES = ("torch", "lightning", "timm", "transformers", "matplotlib", "onnx", "onnxruntime", "numpy")

_PROBE = """
import contextlib, io, json, sys
from depthkd import cli
parser = cli.build_parser()
(action,) = [a for a in parser._actions if isinstance(a, cli.argparse._SubParsersAction)]
runs = [["--help"], ["--version"], ["train"], ["explain", "--sigma", "-1"]] + [[c, "--help"] for c in action.choices]
for argv in runs:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            cli.main(argv)
        except SystemExit:
            pass
print(json.dumps([m for m in %r if m in sys.modules]))
"""


def test_help_version_and_usage_errors_import_no_heavy_module() -> None:
    """`depthkd --help` took seconds because building the parser imported torch (via the demo's constants)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE % (HEAVY_MODULES,)], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(probe.stdout.strip().splitlines()[-1]) == []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"depthkd {__version__}"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _shown(default: object) -> list[str]:
    """The spellings of a default a reader would accept in its help."""
    if isinstance(default, tuple) and len(default) == 2:
        return ["x".join(map(str, default))]
    if isinstance(default, float):
        return [str(default), f"{default:g}"]
    return [str(default)]


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_option_says_what_it_does_and_its_default(command: str) -> None:
    parser = _subparsers()[command]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"{command} {name} has no help"
        text = formatter._expand_help(action)
        default = action.default
        if default is None or default is False or default == [] or default is argparse.SUPPRESS:
            continue
        assert any(shown in text for shown in _shown(default)), f"{command} {name}: default {default!r} not in {text!r}"


def test_explain_names_its_default_output() -> None:
    (action,) = [a for a in _subparsers()["explain"]._actions if "--output" in a.option_strings]
    assert "explain.png" in _subparsers()["explain"]._get_formatter()._expand_help(action)


def test_static_choices_match_the_library() -> None:
    """The parser copies a few library constants so that it imports no torch; they must not drift."""
    from depthkd import cli
    from depthkd.comparison import SETTINGS
    from depthkd.demo import BUDGETS, DEFAULT_METHODS, DEFAULT_SETTING, DEMO_METHODS
    from depthkd.metrics import ALIGNMENTS, PROTOCOLS

    assert set(cli.PROTOCOL_NAMES) == set(PROTOCOLS)
    assert tuple(cli.ALIGNMENT_NAMES) == tuple(ALIGNMENTS)
    assert cli.DEMO_SETTINGS == {name: world.why for name, world in SETTINGS.items()}
    assert cli.DEMO_DEFAULT_SETTING == DEFAULT_SETTING
    assert cli.DEMO_METHOD_NAMES == tuple(DEMO_METHODS)
    assert cli.DEMO_DEFAULT_METHODS == DEFAULT_METHODS
    assert cli.DEMO_DEFAULT_STEPS == (BUDGETS[DEFAULT_SETTING]["full"].steps, BUDGETS[DEFAULT_SETTING]["quick"].steps)


def test_parse_size_matches_the_data_spec_parser() -> None:
    from depthkd import cli
    from depthkd.data.spec import parse_size

    assert cli.parse_size("240x320") == parse_size("240x320") == (240, 320)
    assert cli.parse_size("96X128") == parse_size("96X128")
    for bad in ("240", "0x320", "axb", "-1x4"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.parse_size(bad)


BAD_NUMBERS = [
    (["explain", "--model", "m", "--image", "i", "--sigma", "-1"], "--sigma", "positive"),
    (["explain", "--model", "m", "--image", "i", "--sigma", "0"], "--sigma", "positive"),
    (["explain", "--model", "m", "--image", "i", "--sigma", "nan"], "--sigma", "positive"),
    (["explain", "--model", "m", "--image", "i", "--pixel=-1,4"], "--pixel", "non-negative"),
    (["benchmark", "--model", "m", "--iters", "0"], "--iters", "positive"),
    (["benchmark", "--model", "m", "--warmup", "-1"], "--warmup", "non-negative"),
    (["benchmark", "--model", "m", "--threads", "0"], "--threads", "positive"),
    (["benchmark", "--model", "m", "--batch", "0"], "--batch", "positive"),
    (["evaluate", "--data", "d", "--batch-size", "0"], "--batch-size", "positive"),
    (["evaluate", "--data", "d", "--num-workers", "-1"], "--num-workers", "non-negative"),
    (["evaluate", "--data", "d", "--max-depth", "-3"], "--max-depth", "positive"),
    (["predict", "--model", "m", "--input", "i", "--output", "o", "--scale", "0"], "--scale", "positive"),
    (["simulate", "--out", "o", "--num", "0"], "--num", "positive"),
    (["demo", "--steps", "0"], "--steps", "positive"),
    (["cache-teacher", "--teacher", "t", "--data", "d", "--out", "o", "--batch-size", "0"], "--batch-size",
     "positive"),
    (["preview-datafree", "--data", "d", "--output", "o", "--num-images", "1"], "--num-images", ">= 2"),
    (["preview-datafree", "--data", "d", "--output", "o", "--fit-steps", "-2"], "--fit-steps", "non-negative"),
    (["export", "--model", "m", "--opset", "16"], "--opset", ">= 17"),
    (["verify-data", "d", "--expected", "-1"], "--expected", "non-negative"),
]


@pytest.mark.parametrize(("argv", "option", "expected"), BAD_NUMBERS, ids=lambda v: " ".join(v) if isinstance(v, list)
                         else None)
def test_bad_numbers_are_usage_errors(argv: list[str], option: str, expected: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)  # only parsing: a value that got through must not start the command
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert option in err and expected in err and "Traceback" not in err


def test_good_numbers_still_parse() -> None:
    args = build_parser().parse_args(
        ["explain", "--model", "m", "--image", "i", "--sigma", "0.5", "--pixel", "0,3", "--pixel", "10,20"]
    )
    assert args.sigma == 0.5 and args.pixel == [(0, 3), (10, 20)]
    args = build_parser().parse_args(["benchmark", "--model", "m", "--warmup", "0", "--iters", "1"])
    assert (args.warmup, args.iters, args.threads, args.batch) == (0, 1, 2, 1)
