"""The search space: entries as numbers, lists, ranges or tables; ranges and messages from the one rule
table; TOML and JSON files; flags over files; and no Optuna import."""

import json
import subprocess
import sys

import pytest

from fastmlp.config import RULES
from fastmlp.errors import ConfigError
from fastmlp.space import PARAMS, Space, build_space, parse_param, read_space_file


def test_the_default_space_covers_the_homeworks_hyperparameters():
    space = Space.default()
    assert set(space.params) >= {"batch_size", "layers", "width", "lr", "beta1", "beta2", "eps"}
    assert space.params["lr"].scale == "log" and space.params["eps"].scale == "log"
    assert space.params["beta2"].scale == "log1m"
    assert space.epochs >= space.min_epochs >= 1
    assert Space.from_mapping(space.to_dict()) == space  # what the study stores reads back the same


def test_types_and_scales_come_from_the_rule_table():
    for name, rule in PARAMS.items():
        assert rule is RULES[name]
    assert parse_param("lr", "1e-4:1e-3").scale == RULES["lr"].scale == "log"
    assert parse_param("width", "16:64").integer and not parse_param("beta1", "0.8:0.9").integer


@pytest.mark.parametrize("name,raw,kind,expect", [
    ("lr", "1e-4:3e-3", "range", (1e-4, 3e-3, "log")),
    ("beta1", "0.8:0.99", "range", (0.8, 0.99, "linear")),
    ("beta2", {"low": 0.99, "high": 0.9999}, "range", (0.99, 0.9999, "log1m")),
    ("eps", {"low": 1e-9, "high": 1e-6, "log": False}, "range", (1e-9, 1e-6, "linear")),
    ("batch_size", "32,64", "choice", (32, 64)),
    ("width", [128, 256, 128], "choice", (128, 256)),
    ("layers", 2, "fixed", 2),
    ("lr", "1e-3", "fixed", 1e-3),
    ("lr", {"value": 1e-3}, "fixed", 1e-3),
    ("batch_size", [64], "fixed", 64),
    ("lr", "1e-3:1e-3", "fixed", 1e-3),
])
def test_space_entries_read_as_numbers_lists_ranges_or_tables(name, raw, kind, expect):
    p = parse_param(name, raw)
    assert p.kind == kind
    if kind == "range":
        assert (p.low, p.high, p.scale) == expect
    elif kind == "choice":
        assert p.choices == expect
    else:
        assert p.value == expect


@pytest.mark.parametrize("name,raw,message", [
    ("lr", "0:1e-3", "lr must be > 0; got 0"),
    ("lr", "1e-50", "lr must be > 0; got 1e-50 (it is 0 in float32"),
    ("lr", {"low": 1e-3, "high": 1e-4}, "low 1e-03 is above high 1e-04"),
    ("beta1", {"low": 0.0, "high": 0.9, "scale": "log"}, "a log scale needs low > 0"),
    ("beta2", 1.0, "beta2 must be in [0, 1); got 1"),
    ("lr_decay", "0:1", "lr_decay must be in (0, 1]; got 0"),
    ("batch_size", 0, "batch_size must be >= 1; got 0"),
    ("width", "64.5", "width must be an integer >= 1; got 64.5"),
    ("lr", "fast", "lr: not a number"),
    ("lr", [], "the list of choices is empty"),
    ("lr", {"low": 1e-4}, "a range needs both low and high"),
    ("lr", {"low": 1e-4, "high": 1e-3, "scale": "cubic"}, "scale must be one of"),
    ("lr", {"lo": 1e-4}, "unknown key 'lo'"),
    ("lr", True, "expected a number"),
])
def test_bad_space_entries_are_one_line_errors_naming_them(name, raw, message):
    with pytest.raises(ConfigError) as err:
        parse_param(name, raw, where="space.toml")
    text = str(err.value)
    assert message in text and text.startswith(f"space.toml: {name}") and "\n" not in text


def test_a_value_out_of_range_reads_the_same_as_for_train():
    with pytest.raises(ConfigError) as train_err:
        RULES["beta2"].check(1.0, "flags")
    with pytest.raises(ConfigError) as space_err:
        parse_param("beta2", "1", where="flags")
    assert str(space_err.value) == str(train_err.value)


def test_a_space_file_in_toml_or_json_changes_the_default(tmp_path):
    toml = tmp_path / "space.toml"
    toml.write_text('lr = "1e-3:2e-3"\nbatch_size = [64]\nepochs = 3\n[beta2]\nlow = 0.99\nhigh = 0.999\n')
    space = read_space_file(toml, Space.default())
    assert (space.params["lr"].low, space.params["lr"].high) == (1e-3, 2e-3)
    assert space.params["batch_size"].value == 64 and space.epochs == 3
    assert space.params["beta2"].high == 0.999
    assert space.params["width"] == Space.default().params["width"]  # untouched entries stay
    js = tmp_path / "space.json"
    js.write_text(json.dumps({"eta": 1e-3, "epsilon": "1e-8:1e-7", "min_epochs": 2}))
    space = read_space_file(js, Space.default())
    assert space.params["lr"].value == 1e-3 and space.params["eps"].kind == "range" and space.min_epochs == 2


@pytest.mark.parametrize("text,suffix,message", [
    ("lr = [1e-3,", ".toml", "not valid TOML"),
    ('{"lr": }', ".json", "not valid JSON"),
    ('{"momentum": 0.9}', ".json", "unknown hyperparameter 'momentum'"),
    ("epochs = 0", ".toml", "epochs must be >= 1; got 0"),
    ("epochs = [3, 4]", ".toml", "epochs: must be one whole number"),
])
def test_a_bad_space_file_is_a_one_line_error_naming_the_file(tmp_path, text, suffix, message):
    path = tmp_path / f"space{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        read_space_file(path, Space.default())
    assert str(err.value).startswith(str(path)) and message in str(err.value) and "\n" not in str(err.value)


def test_a_missing_space_file_is_named():
    with pytest.raises(ConfigError, match="nowhere.toml: no such space file"):
        read_space_file("nowhere.toml", Space.default())


def test_flags_apply_over_the_file(tmp_path):
    toml = tmp_path / "space.toml"
    toml.write_text('lr = "1e-3:2e-3"\nwidth = [64]\n')
    space = build_space(Space.default(), toml, {"lr": "5e-4", "width": None})
    assert space.params["lr"].value == 5e-4 and space.params["width"].value == 64


def test_a_smaller_epoch_budget_lowers_the_inherited_minimum_but_not_an_explicit_one():
    base = Space.default()
    assert base.min_epochs > 1
    smaller = Space.from_mapping({"epochs": 1}, base=base)
    assert (smaller.epochs, smaller.min_epochs) == (1, 1)
    with pytest.raises(ConfigError, match="min_epochs 2 is above epochs 1"):
        Space.from_mapping({"epochs": 1, "min_epochs": 2}, base=base)


class FixedTrial:
    """The ``suggest_*`` methods of an Optuna trial, answering the low end (or the first choice)."""

    def __init__(self):
        self.params = {}

    def suggest_categorical(self, name, choices):
        return self.params.setdefault(name, choices[0])

    def suggest_int(self, name, low, high, log=False):
        return self.params.setdefault(name, low)

    def suggest_float(self, name, low, high, log=False):
        return self.params.setdefault(name, low)


def test_a_space_draws_a_train_config_per_layer_and_beta2_in_one_minus():
    space = build_space(Space.default(), flags={"layers": "2", "beta2": "0.99:0.999"})
    trial = FixedTrial()
    fields = space.suggest(trial)
    assert fields["hidden_sizes"] == (128, 128) and set(trial.params) >= {"width_1", "width_2"}
    assert trial.params["one_minus_beta2"] == pytest.approx(0.001) and fields["beta2"] == pytest.approx(0.999)
    assert fields["epochs"] == space.epochs and fields["lr_decay"] == pytest.approx(0.7)


def test_the_space_module_does_not_import_optuna():
    code = "import sys, fastmlp.space; print('optuna' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
