"""Config loading: inheritance, overrides, defaults and every kind of error."""

from pathlib import Path

import pytest

from recon.config import ConfigError, load_config, parse_value
from recon.conflict.scores import read_permutation
from recon.methods import resolve

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """
data:
  name: multi_fashion
model:
  name: resnet18
train:
  epochs: 3
  batch_size: 8
  lr: 0.1
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_filled(tmp_path):
    config = load_config(write(tmp_path / "c.yaml", MINIMAL))
    assert config["train"]["epochs"] == 3
    assert config["train"]["optimizer"] == "sgd"
    assert config["method"] == {"name": "joint"}
    assert config["model"]["branch"]["init"] == "copy"
    assert config["wandb"]["mode"] == "offline"
    assert config["data"]["train_size"] is None


def test_extends_merges_nested_sections(tmp_path):
    write(tmp_path / "base.yaml", MINIMAL)
    child = write(tmp_path / "child.yaml", "extends: base.yaml\ntrain:\n  lr: 0.5\n")
    config = load_config(child)
    assert config["train"]["lr"] == 0.5
    assert config["train"]["epochs"] == 3
    assert config["train"]["batch_size"] == 8


def test_extends_chain_and_relative_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "base.yaml", MINIMAL)
    write(tmp_path / "sub" / "mid.yaml", "extends: ../base.yaml\nseed: 7\n")
    leaf = write(tmp_path / "sub" / "leaf.yaml", "extends: mid.yaml\ntrain:\n  epochs: 9\n")
    config = load_config(leaf)
    assert config["seed"] == 7
    assert config["train"]["epochs"] == 9


def test_extends_cycle_rejected(tmp_path):
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_overrides_parse_yaml_values(tmp_path):
    path = write(tmp_path / "c.yaml", MINIMAL)
    config = load_config(path, ["train.lr=1e-4", "train.milestones=[2, 3]", "data.train_size=64",
                                "recon.record=true", "tasks=[T1]"])
    assert config["train"]["lr"] == 1e-4
    assert config["train"]["milestones"] == [2, 3]
    assert config["data"]["train_size"] == 64
    assert config["recon"]["record"] is True
    assert config["tasks"] == ["T1"]


def test_yaml_exponent_without_dot_is_float():
    assert parse_value("5e-5") == 5e-5
    assert parse_value("1E3") == 1000.0


def test_int_accepted_for_float(tmp_path):
    config = load_config(write(tmp_path / "c.yaml", MINIMAL), ["train.lr=1"])
    assert config["train"]["lr"] == 1.0
    assert isinstance(config["train"]["lr"], float)


def test_unknown_key_suggests_closest(tmp_path):
    path = write(tmp_path / "c.yaml", MINIMAL + "  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train.epoch' in .*c.yaml; did you mean 'train.epochs'"):
        load_config(path)


def test_unknown_key_from_override_names_source(tmp_path):
    path = write(tmp_path / "c.yaml", MINIMAL)
    with pytest.raises(ConfigError, match="unknown key 'train.bach_size' in the command-line overrides"):
        load_config(path, ["train.bach_size=4"])


def test_wrong_type_names_key_and_value(tmp_path):
    path = write(tmp_path / "c.yaml", MINIMAL)
    with pytest.raises(ConfigError, match=r"key 'train.epochs' .* must be an integer; found 'ten' \(str\)"):
        load_config(path, ["train.epochs=ten"])


def test_bool_is_not_an_integer(tmp_path):
    path = write(tmp_path / "c.yaml", MINIMAL)
    with pytest.raises(ConfigError, match="key 'train.epochs'"):
        load_config(path, ["train.epochs=true"])


def test_choice_lists_allowed_values(tmp_path):
    path = write(tmp_path / "c.yaml", MINIMAL)
    with pytest.raises(ConfigError, match="allowed values: sgd, adam"):
        load_config(path, ["train.optimizer=rmsprop"])


def test_missing_required_key(tmp_path):
    path = write(tmp_path / "c.yaml", MINIMAL.replace("  lr: 0.1\n", ""))
    with pytest.raises(ConfigError, match=r"missing required key 'train.lr'.*train.lr=VALUE"):
        load_config(path)


def test_section_given_a_value(tmp_path):
    path = write(tmp_path / "c.yaml", MINIMAL)
    with pytest.raises(ConfigError, match="key 'train' .* must be a section"):
        load_config(path, ["train=3"])


def test_unknown_method_lists_registered(tmp_path):
    path = write(tmp_path / "c.yaml", MINIMAL)
    with pytest.raises(ConfigError, match="unknown method 'nosuch'; registered methods: .*joint"):
        load_config(path, ["method.name=nosuch"])


def test_unknown_method_option_lists_options(tmp_path):
    path = write(tmp_path / "c.yaml", MINIMAL)
    with pytest.raises(ConfigError, match="unknown key 'method.alpha' .*method 'joint' has the options: none"):
        load_config(path, ["method.alpha=0.4"])


def test_method_name_case_insensitive(tmp_path):
    config = load_config(write(tmp_path / "c.yaml", MINIMAL), ["method.name=Baseline"])
    assert config["method"]["name"] == "Baseline"


def test_malformed_override(tmp_path):
    path = write(tmp_path / "c.yaml", MINIMAL)
    with pytest.raises(ConfigError, match="form key=value"):
        load_config(path, ["train.epochs"])


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config("nope.yaml")


def test_invalid_yaml(tmp_path):
    path = write(tmp_path / "c.yaml", "train: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML in .*c.yaml"):
        load_config(path)


MODEL_OF_DATASET = {"multi_mnist": "resnet18", "multi_fashion": "resnet18", "multi_fashion_mnist": "resnet18",
                    "cityscapes": "segnet", "nyuv2": "mtan"}


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_loads(path):
    if path.name.endswith("base.yaml"):
        pytest.skip("base files are completed by the configs that extend them")
    config = load_config(path)
    dataset = path.parent.name
    assert config["data"]["name"] == dataset
    assert config["model"]["name"] == MODEL_OF_DATASET[dataset]

    # The file name is the method's name. A _recon config branches the top K of Shi et al.,
    # "Recon", ICLR 2023: 25 on the digit benchmarks, 39 on CityScapes, 22 on NYUv2.
    experiment = path.stem
    method = experiment.removesuffix("_recon")
    if method not in ("search", "single_task"):
        assert resolve(config["method"]["name"]).name == method
    branch = config["model"]["branch"]
    if experiment.endswith("_recon"):
        assert branch["top_k"] == {"cityscapes": 39, "nyuv2": 22}.get(dataset, 25)
        if branch["file"] is not None:
            assert len(read_permutation(branch["file"])) >= branch["top_k"]
    else:
        assert branch["top_k"] is None
        assert branch["file"] is None
    assert config["recon"]["record"] == (experiment == "search")
