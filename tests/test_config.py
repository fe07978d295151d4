"""Recipe loading: inheritance, typed overrides, validation errors, dumps and run records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from depthkd.config import (
    RecipeConfig,
    apply_overrides,
    dump_config,
    load_recipe,
    parse_override,
    read_recipe_dict,
    recipe_from_dict,
    write_run_metadata,
)
from depthkd.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_base_inheritance_is_relative_to_the_file_and_merges_deeply(tmp_path: Path) -> None:
    write(tmp_path / "shared" / "base.yaml", {"optim": {"lr": 0.1, "weight_decay": 0.5}, "run": {"name": "base"}})
    child = write(
        tmp_path / "recipes" / "child.yaml",
        {"base": "../shared/base.yaml", "optim": {"lr": 0.2}, "trainer": {"max_steps": 7}},
    )
    config = load_recipe(child)
    assert config.optim.lr == 0.2
    assert config.optim.weight_decay == 0.5  # kept from the base: sections merge key by key
    assert config.run.name == "base"
    assert config.trainer.max_steps == 7


def test_inheritance_cycle_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", {"base": "b.yaml"})
    write(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        read_recipe_dict(tmp_path / "a.yaml")


def test_dotted_overrides_are_typed() -> None:
    config = load_recipe(
        None,
        [
            "optim.lr=3e-4",  # YAML reads this as a string; the float field converts it
            "trainer.max_steps=12",
            "trainer.precision=bf16-mixed",
            "trainer.skip_nonfinite=true",
            "data.crop=[64, 96]",
            "trainer.devices=auto",
            "method.options.alpha=1",
        ],
    )
    assert config.optim.lr == pytest.approx(3e-4) and isinstance(config.optim.lr, float)
    assert config.trainer.max_steps == 12
    assert config.trainer.precision == "bf16-mixed"
    assert config.trainer.skip_nonfinite is True
    assert config.data.crop == (64, 96)
    assert config.trainer.devices == "auto"
    assert config.method.options.alpha == 1.0


def test_integer_precision_from_yaml_is_accepted() -> None:
    assert load_recipe(None, ["trainer.precision=32"]).trainer.precision == "32"


def test_unknown_key_names_the_key_and_lists_valid_ones(tmp_path: Path) -> None:
    recipe = write(tmp_path / "r.yaml", {"optim": {"lrr": 0.1}})
    with pytest.raises(ConfigError) as error:
        load_recipe(recipe)
    message = str(error.value)
    assert "'optim.lrr'" in message and str(recipe) in message
    assert "did you mean 'lr'" in message
    assert "weight_decay" in message  # the valid keys are listed


def test_unknown_section_and_method_option_are_errors() -> None:
    with pytest.raises(ConfigError, match="'trainr'"):
        load_recipe(None, ["trainr.max_steps=3"])
    with pytest.raises(ConfigError, match=r"'method.options.wieght'.*valid keys.*gt_weight"):
        load_recipe(None, ["method.name=response", "method.options.wieght=2"])


def test_wrong_types_and_values_are_errors() -> None:
    with pytest.raises(ConfigError, match="'optim.lr'.*'fast'"):
        load_recipe(None, ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="trainer.precision"):
        load_recipe(None, ["trainer.precision=8-bit"])
    with pytest.raises(ConfigError, match="expected 2 values"):
        load_recipe(None, ["data.crop=[1,2,3]"])
    with pytest.raises(ConfigError, match="unknown method 'respons'"):
        load_recipe(None, ["method.name=respons"])
    with pytest.raises(ConfigError, match="unknown head"):
        load_recipe(None, ["student.head=magic"])
    with pytest.raises(ConfigError, match="max_steps or max_epochs"):
        load_recipe(None, ["trainer.max_epochs=null"])


def test_override_syntax_errors() -> None:
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override("optim.lr")
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"optim": {"lr": 1.0}}, ["optim.lr.x=2"])


def test_dump_round_trips(tmp_path: Path) -> None:
    config = load_recipe(None, ["method.name=response", "method.options.loss=ssim+si", "data.crop=[32,48]"])
    path = tmp_path / "dumped.yaml"
    path.write_text(dump_config(config))
    again = load_recipe(path)
    assert again == config
    assert again.method.options.loss == "ssim+si"


def test_method_terms_are_validated_by_each_method() -> None:
    config = recipe_from_dict(
        {
            "method": {
                "name": "response",
                "options": {"loss": "mse"},
                "add": [{"name": "supervised", "weight": 0.1, "options": {"alpha": 10}}],
            }
        }
    )
    assert config.method.add[0].weight == 0.1
    assert config.method.add[0].options.alpha == 10.0
    with pytest.raises(ConfigError, match=r"method.add\[0\].options.beta"):
        recipe_from_dict({"method": {"name": "response", "add": [{"name": "supervised", "options": {"beta": 1}}]}})


def test_shipped_recipes_load() -> None:
    recipes = sorted(CONFIGS.glob("*.yaml"))
    assert {p.name for p in recipes} >= {"base.yaml", "supervised-sim.yaml", "response-sim.yaml", "feature-sim.yaml"}
    for recipe in recipes:
        assert isinstance(load_recipe(recipe), RecipeConfig)
    assert load_recipe("response-sim").method.name == "response"  # found by name in configs/


def test_run_metadata_records_config_versions_and_git(tmp_path: Path) -> None:
    config = load_recipe(None, ["run.name=x"])
    write_run_metadata(tmp_path, config)
    assert load_recipe(tmp_path / "config.yaml") == config
    environment = json.loads((tmp_path / "environment.json").read_text())
    versions = environment["versions"]
    for package in ("torch", "timm", "lightning", "depthkd"):
        assert versions[package], package
    assert "git" in environment


def test_evaluation_settings_are_checked_at_load_time() -> None:
    with pytest.raises(ConfigError, match="'eval.protocol'.*'nyuu'.*sim_indoor"):
        load_recipe(None, ["eval.protocol=nyuu"])
    with pytest.raises(ConfigError, match="'trainer.monitor'"):
        load_recipe(None, ["trainer.monitor=accuracy"])
    assert load_recipe(None, ["eval.teacher_align=lstsq_disparity"]).eval.teacher_align == "lstsq_disparity"


def test_switching_method_drops_the_inherited_method_options(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", {"method": {"name": "supervised", "options": {"alpha": 5}}})
    child = write(tmp_path / "child.yaml", {"base": "base.yaml", "method": {"name": "response"}})
    assert load_recipe(child).method.options.loss == "auto"
    assert load_recipe(tmp_path / "base.yaml", ["method.name=feature"]).method.name == "feature"
    assert load_recipe(tmp_path / "base.yaml", ["method.name=supervised"]).method.options.alpha == 5.0


def test_student_specs_accept_command_line_and_yaml_spellings() -> None:
    """One parser for `student:` specs (inspect and benchmark): 1/true and 32,16 / [32,16] mean the same."""
    from depthkd.config import student_config_from_spec

    short = student_config_from_spec("student:mobilenetv2_050?lgconv=1&decoder_channels=32,16,16,8&max_depth=80")
    yaml_like = student_config_from_spec("mobilenetv2_050?lgconv=true&decoder_channels=[32,16,16,8]&max_depth=80.0")
    assert short == yaml_like
    assert (short.lgconv, short.decoder_channels, short.max_depth) == (True, (32, 16, 16, 8), 80.0)
    with pytest.raises(ConfigError, match="unknown key.*valid keys"):
        student_config_from_spec("student:mobilenetv2_050?pretrained_path=/weights.pth")
    with pytest.raises(ConfigError, match="names no backbone"):
        student_config_from_spec("student:?head=bins")


def test_an_unknown_override_key_is_blamed_on_the_override_not_the_file(tmp_path: Path) -> None:
    recipe = write(tmp_path / "r.yaml", {"trainer": {"max_steps": 3}})
    with pytest.raises(ConfigError) as error:
        load_recipe(recipe, ["trainer.max_step=100"])
    message = str(error.value)
    assert "'trainer.max_step'" in message and "--set trainer.max_step=100" in message
    assert str(recipe) not in message
    assert "did you mean 'max_steps'" in message
    with pytest.raises(ConfigError, match=r"'optim.lr' from --set optim.lr=fast"):
        load_recipe(recipe, ["optim.lr=fast"])
    with pytest.raises(ConfigError, match=r"'optim.betas\[0\]' from --set optim={betas: \[a, 1\]}"):
        load_recipe(recipe, ["optim={betas: [a, 1]}"])  # a key below an overridden section


def test_a_bad_file_key_is_still_blamed_on_the_file(tmp_path: Path) -> None:
    recipe = write(tmp_path / "r.yaml", {"trainer": {"max_stepz": 3}})
    with pytest.raises(ConfigError) as error:
        load_recipe(recipe, ["trainer.max_steps=100"])
    assert f"'trainer.max_stepz' in {recipe}" in str(error.value) and "--set" not in str(error.value)


def test_a_missing_recipe_does_not_double_its_suffix() -> None:
    from depthkd.config import find_recipe

    with pytest.raises(ConfigError) as error:
        find_recipe("nope.yaml")
    assert "nope.yaml.yaml" not in str(error.value) and "nope.yaml" in str(error.value)
    with pytest.raises(ConfigError) as error:
        find_recipe("nope.yml")
    assert "nope.yml.yaml" not in str(error.value)
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        find_recipe("nope")  # a bare name is looked for with .yaml


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("trainer.val_every_n_steps=0", r"'trainer.val_every_n_steps' from --set .*: 0 must be >= 1"),
        ("trainer.val_every_n_steps=-5", r"'trainer.val_every_n_steps'.*>= 1"),
        ("trainer.log_every_n_steps=-1", r"'trainer.log_every_n_steps'.*>= 0"),
        ("optim.lr=-1", r"'optim.lr' from --set optim.lr=-1: -1.0 must be > 0"),
        ("optim.lr=0", r"'optim.lr'.*must be > 0"),
        ("optim.betas=[2,3]", r"'optim.betas'.*\(2.0, 3.0\).*\[0, 1\)"),
        ("optim.betas=[0.9,1.0]", r"'optim.betas'.*\[0, 1\)"),
        ("optim.weight_decay=-0.1", r"'optim.weight_decay'.*>= 0"),
        ("trainer.devices=abc", r"'trainer.devices' from --set trainer.devices=abc: 'abc' is not.*'auto'"),
        ("trainer.devices=0", r"'trainer.devices'.*0"),
        ("trainer.num_nodes=0", r"'trainer.num_nodes'.*>= 1"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(override: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_recipe(None, [override])


@pytest.mark.parametrize(
    "override",
    ["trainer.devices=auto", "trainer.devices=2", "trainer.devices=-1", "trainer.devices='0,1'",
     "trainer.devices=0,1", "optim.betas=[0.0,0.999]", "trainer.val_every_n_steps=5", "optim.weight_decay=0"],
)
def test_in_range_values_are_accepted(override: str) -> None:
    assert isinstance(load_recipe(None, [override]), RecipeConfig)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n"])
def test_an_empty_recipe_is_refused_rather_than_trained_on_defaults(tmp_path: Path, text: str) -> None:
    recipe = tmp_path / "empty.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError, match=r"empty\.yaml is empty"):
        load_recipe(str(recipe))
    assert load_recipe(str(recipe), ["optim.lr=0.5"]).optim.lr == 0.5  # everything said on the command line
