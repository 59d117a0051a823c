"""The search space: entries as numbers, lists, ranges or tables; ranges and messages from the one rule
table; TOML and JSON files; flags over files; and no Optuna import."""

import json
import subprocess
import sys

import pytest

from fastmlp.config import RULES
from fastmlp.errors import ConfigError
from fastmlp.search.space import PARAMS, Space, build_space, parse_param, read_space_file


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
    code = "import sys, fastmlp.search.space; print('optuna' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


# ----------------------------------------------------------------------------- the recipe, and conditions

class RecordingTrial:
    """The ``suggest_*`` methods of an Optuna trial: records each call, answers from ``answers`` (else the
    low end, or the first choice)."""

    def __init__(self, **answers):
        self.calls, self.params, self.answers = [], {}, answers

    def suggest_categorical(self, name, choices):
        self.calls.append(("categorical", name, tuple(choices)))
        return self.params.setdefault(name, self.answers.get(name, choices[0]))

    def suggest_int(self, name, low, high, log=False):
        self.calls.append(("int", name, low, high, log))
        return self.params.setdefault(name, self.answers.get(name, low))

    def suggest_float(self, name, low, high, log=False):
        self.calls.append(("float", name, pytest.approx(low), pytest.approx(high), log))
        return self.params.setdefault(name, self.answers.get(name, low))


def test_the_plain_space_asks_optuna_for_the_same_parameters_in_the_same_order_as_it_always_did():
    """The same questions in the same order: so a seed draws the plain space's trials as it always did."""
    trial = RecordingTrial(layers=2)
    fields = Space.default().suggest(trial)
    assert trial.calls == [("categorical", "batch_size", (32, 64, 128, 256)), ("int", "layers", 1, 3, False),
                           ("categorical", "width_1", (128, 256, 512, 1024)),
                           ("categorical", "width_2", (128, 256, 512, 1024)),
                           ("float", "lr", 1e-4, 3e-3, True), ("float", "beta1", 0.8, 0.99, False),
                           ("float", "one_minus_beta2", 1e-4, 1e-2, True), ("float", "eps", 1e-9, 1e-6, True),
                           ("float", "lr_decay", 0.7, 1.0, False)]
    assert set(fields) == {"batch_size", "hidden_sizes", "lr", "beta1", "beta2", "eps", "lr_decay", "epochs"}


def test_the_recipe_space_searches_dropout_weight_decay_the_warp_and_the_schedule():
    space = build_space(Space.default(), "recipe")
    assert space == Space.named("recipe")
    assert {"dropout", "dropout_input", "weight_decay", "label_smoothing", "ema", "augment", "schedule", "warmup",
            "elastic_alpha", "elastic_sigma", "aug_rotate"} <= set(space.searched())
    assert space.params["augment"].choices == ("affine", "elastic")
    assert space.params["ema"].scale == "log1m" and space.params["weight_decay"].scale == "log"
    assert Space.from_mapping(space.to_dict()) == space  # what the study stores reads back the same


@pytest.mark.parametrize("answers,drawn,not_drawn", [
    ({"augment": "elastic", "schedule": "onecycle"}, {"elastic_alpha", "elastic_sigma", "aug_rotate", "warmup"},
     {"lr_decay"}),
    ({"augment": "affine", "schedule": "cosine"}, {"aug_rotate", "aug_shift", "warmup"},
     {"elastic_alpha", "elastic_sigma", "lr_decay"}),
])
def test_an_option_is_drawn_only_in_trials_where_it_does_something(answers, drawn, not_drawn):
    space = build_space(Space.named("recipe"), flags={"schedule": "decay,cosine,onecycle", "lr_decay": "0.7:1"})
    trial = RecordingTrial(**answers)
    fields = space.suggest(trial)
    assert drawn <= set(trial.params) and not not_drawn & set(trial.params)
    assert ("elastic_alpha" in fields) == ("elastic_alpha" in drawn)  # else TrainConfig's default, unused
    assert fields["lr_decay"] == 1.0  # eta's decay, not drawn, is off
    asked = [call[1] for call in trial.calls]
    assert asked.index("schedule") < asked.index("warmup") and asked.index("augment") < asked.index("aug_rotate")


def test_a_warp_left_off_draws_none_of_its_strengths():
    trial = RecordingTrial()
    fields = build_space(Space.named("recipe"), flags={"augment": "none"}).suggest(trial)
    assert fields["augment"] == "none" and not {n for n in trial.params if n.startswith(("aug_", "elastic_"))}


def test_a_space_file_states_its_own_conditions_over_a_built_in_base(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text('base = "recipe"\naugment = ["none", "elastic"]\n'
                    'dropout = { low = 0.1, high = 0.5, when = { augment = "elastic" } }\n'
                    'label_smoothing = { choices = [0.0, 0.1], when = {} }\n')
    space = read_space_file(path, Space.default())
    assert space.params["dropout"].when == (("augment", ("elastic",)),)
    assert space.params["label_smoothing"].when == () and space.params["width"].choices == (768, 1024, 1536)
    assert read_space_file_text(space.to_toml(), tmp_path) == space  # --print-space's TOML says it all
    off, on = RecordingTrial(augment="none"), RecordingTrial(augment="elastic")
    space.suggest(off), space.suggest(on)
    assert "dropout" not in off.params and on.params["dropout"] == 0.1


def read_space_file_text(text: str, folder) -> Space:
    (folder / "printed.toml").write_text(text)
    return read_space_file(folder / "printed.toml", Space.default())


@pytest.mark.parametrize("text,message", [
    ('lr = { low = 1e-3, high = 2e-3, when = { augment = "elastic" } }', "lr: is drawn in every trial"),
    ('dropout = { low = 0.1, high = 0.2, when = "elastic" }', "when must be a table"),
    ('dropout = { low = 0.1, high = 0.2, when = { momentum = 1 } }', "when names 'momentum'"),
    ('dropout = { low = 0.1, high = 0.2, when = { augment = "wavy" } }', "dropout: when: augment must be one of"),
    ('dropout = { low = 0.1, high = 0.2, when = { lr = 1e-3 } }', "when tests lr, which is a range"),
    ('dropout = { low = 0.1, high = 0.2, when = { augment = "elastic" } }', "when augment is elastic never holds"),
    ('dropout = { low = 0.1, high = 0.2, when = { augment = [] } }', "the list of values is empty"),
    ('dropout = { when = { augment = "none" } }', "'when' needs a value, choices, or low/high"),
    ('dropout = { choices = [0.1, 0.2], when = { dropout_input = 0.1 } }\n'
     'dropout_input = { choices = [0.1, 0.2], when = { dropout = 0.2 } }', "wait on each other"),
    ('augment = "0:1"', "augment: is one of none, affine, elastic, not a range"),
    ('schedule = "warm"', "schedule must be one of decay, cosine, onecycle"),
    ('base = "fancy"', "base must be one of plain, recipe"),
])
def test_a_bad_condition_or_option_is_a_one_line_error_naming_it(tmp_path, text, message):
    path = tmp_path / "space.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as err:
        read_space_file(path, Space.default())
    assert str(err.value).startswith(str(path)) and message in str(err.value) and "\n" not in str(err.value)


def test_word_options_take_their_rules_choices():
    assert parse_param("augment", "affine,elastic").choices == ("affine", "elastic")
    assert parse_param("schedule", ["cosine"]).value == "cosine"
    assert parse_param("warmup", "1:8").when == (("schedule", ("cosine", "onecycle")),)
