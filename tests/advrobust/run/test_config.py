"""advrobust.run.config: every value is checked before any work, errors name the key path, the
hash, and the experiment configs."""

from __future__ import annotations

import pytest

from advrobust.run import config
from tests.conftest import REPO

BASE = """
[run]
dataset = "mnist"
epsilons = [0.1, 0.2]
{run_extra}

[[attacks]]
name = "pgd"
{attack_extra}

[[models]]
name = "first"
train = {{ model = "cnn" {train_extra} }}
"""


def _config(run_extra="", attack_extra="", train_extra="", base_dir=None):
    text = BASE.format(run_extra=run_extra, attack_extra=attack_extra, train_extra=train_extra)
    return config.loads(text, base_dir=base_dir)


@pytest.mark.parametrize("attack_extra, match", [
    ('params = "x"', r"attacks\[0\]\.params must be a table of the attack's keyword arguments"),
    ("params = { steps = 0 }", r"attacks\[0\] \('pgd'\)\.params: steps must be an integer >= 1, got 0"),
    ('params = { steps = "many" }', r"attacks\[0\] \('pgd'\)\.params: steps must be an integer >= 1, got 'many'"),
    ('params = { loss = "hinge" }', r"attacks\[0\] \('pgd'\)\.params: unknown loss 'hinge'"),
    ("params = { restarts = 0 }", r"restarts must be an integer >= 1"),
    ("params = { sizes = 3 }", r"attacks\[0\]: attack 'pgd' takes no parameter\(s\) \['sizes'\]"),
])
def test_attack_parameter_values_are_checked_before_any_work(attack_extra, match):
    with pytest.raises(config.ConfigError, match=match):
        _config(attack_extra=attack_extra)


@pytest.mark.parametrize("train_extra, match", [
    (", epochs = 2.5", r"models\[0\] \('first'\)\.train\.epochs must be an integer, got 2\.5"),
    (', batch_size = "64"', r"models\[0\] \('first'\)\.train\.batch_size must be an integer, got '64'"),
    (", dropout = 1", r"train\.dropout must be true or false, got 1"),
    (", learning_rate = true", r"train\.learning_rate must be a number or absent \(None\), got True"),
    (", defense_params = 3", r"train\.defense_params must be a table, got 3"),
    (", epochs = 0", r"models\[0\] \('first'\)\.train: epochs must be >= 1, got 0"),
    (', defense = "magic"', r"models\[0\] \('first'\)\.train: unknown defense 'magic'"),
])
def test_train_values_are_typed_and_ranged_with_their_key_path(train_extra, match):
    with pytest.raises(config.ConfigError, match=match):
        _config(train_extra=train_extra)


def test_a_weights_file_is_relative_to_the_config_file_and_its_bytes_are_in_the_hash(tmp_path):
    (tmp_path / "weights.h5").write_bytes(b"first")
    text = BASE.format(run_extra="", attack_extra="", train_extra="").replace(
        'model = "cnn"', 'model = "vgg19", weights = "weights.h5"')
    (tmp_path / "run.toml").write_text(text)
    first = config.load(tmp_path / "run.toml")
    assert first.models[0].train["weights"] == str((tmp_path / "weights.h5").resolve())
    (tmp_path / "weights.h5").write_bytes(b"second")
    assert config.load(tmp_path / "run.toml").hash() != first.hash()
    with pytest.raises(config.ConfigError, match=r"train\.weights: file .*missing\.h5.* relative to the config"):
        config.loads(text.replace("weights.h5", "missing.h5"), base_dir=tmp_path)


def test_configs_without_a_weights_file_keep_their_hash():
    # The hash of a config must not change when a field is added, or old runs could not resume.
    assert "weights_sha256" not in _config().to_dict()["models"][0]


@pytest.mark.parametrize("name", ["apgd_ce_art", "apgd_dlr_art"])
def test_arts_apgd_is_refused_naming_the_choices_and_what_replaces_it(name):
    text = BASE.format(run_extra="", attack_extra="params = { steps = 100 }", train_extra="").replace('"pgd"',
                                                                                                      f'"{name}"')
    with pytest.raises(config.ConfigError) as error:
        config.loads(text)
    message = str(error.value)
    assert message.startswith(f"attacks[0]: unknown attack {name!r}; choose one of: fgsm, bim, pgd")
    assert "autoattack" in message and "ART's APGD no longer runs in a run" in message and "\n" not in message


def test_the_ensemble_is_an_attack_of_run_configs():
    text = BASE.format(run_extra="", attack_extra='params = { preset = "fast", seed = 0 }',
                       train_extra="").replace('"pgd"', '"autoattack"')
    assert config.loads(text).attacks[0].params == {"preset": "fast", "seed": 0}
    with pytest.raises(config.ConfigError, match=r"attacks\[0\] \('autoattack'\)\.params: .*'huge'"):
        config.loads(text.replace('"fast"', '"huge"'))


SMALL_CONFIG = """
[run]
dataset = "mnist"
epsilons = [0.0, 0.1]
[[attacks]]
name = "pgd"
params = { steps = 3 }
[[models]]
name = "a"
train = { model = "cnn", epochs = 1 }
"""


def test_default_config_is_the_quick_fashion_mnist_comparison():
    default = config.load()
    assert default.dataset == "fashion_mnist" and default.norm == "inf"
    assert default.epsilons == (0.0, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3)
    assert [a.name for a in default.attacks] == ["fgsm", "pgd", "autoattack"]
    assert default.attacks[2].params["preset"] == "fast" and default.attacks[2].n_examples == 50
    names = [m.name for m in default.models]
    assert {"cnn", "nsl-cnn", "vgg19"} <= set(names)
    assert default.model("nsl-cnn").baseline == "cnn"
    assert default.n_for(default.model("cnn")) >= 1000
    assert default.model("nsl-cnn").train_config(0).defense == "nsl"


def test_hash_is_stable_and_changes_with_the_config():
    first, second = config.loads(SMALL_CONFIG), config.loads(SMALL_CONFIG)
    assert first.hash() == second.hash()
    assert config.loads(SMALL_CONFIG.replace("0.1]", "0.2]")).hash() != first.hash()
    assert config.loads(SMALL_CONFIG.replace("steps = 3", "steps = 4")).hash() != first.hash()


@pytest.mark.parametrize("change, message", [
    (("[run]", "[run]\nbogus = 1"), "unknown key(s) ['bogus']"),
    (("[0.0, 0.1]", "[0.1, 0.0]"), "increasing"),
    (("[0.0, 0.1]", "[-0.1, 0.1]"), ">= 0.0"),
    (("[0.0, 0.1]", "[]"), "non-empty list"),
    (('name = "pgd"', 'name = "pgdd"'), "unknown attack 'pgdd'"),
    (("steps = 3", "stepz = 3"), "takes no parameter(s) ['stepz']"),
    (("steps = 3", "eps = 3"), "set 'eps' in [run]"),
    (('model = "cnn", epochs = 1', 'model = "cnn", epochs = 0'), "epochs must be >= 1"),
    (('model = "cnn"', 'model = "resnet"'), "unknown model 'resnet'"),
    (('train = { model = "cnn", epochs = 1 }', 'path = "missing.keras"'), "does not exist"),
    (('train = { model = "cnn", epochs = 1 }', 'train = { model = "cnn" }\nbaseline = "zz"'), "baseline 'zz'"),
    (('dataset = "mnist"', 'dataset = "cifar"'), "unknown dataset 'cifar'"),
    (("[run]", "[run"), "not valid TOML"),
])
def test_bad_configs_fail_before_any_work_with_a_clear_message(change, message):
    with pytest.raises(config.ConfigError) as error:
        config.loads(SMALL_CONFIG.replace(*change))
    assert message in str(error.value)


def test_duplicate_model_names_and_a_model_with_path_and_train_are_refused(tmp_path):
    twice = SMALL_CONFIG + '[[models]]\nname = "a"\ntrain = { model = "cnn" }\n'
    with pytest.raises(config.ConfigError, match="unique"):
        config.loads(twice)
    model_file = tmp_path / "m.keras"
    model_file.write_bytes(b"x")
    both = SMALL_CONFIG.replace('train = { model = "cnn", epochs = 1 }',
                        'train = { model = "cnn" }\npath = "m.keras"')
    with pytest.raises(config.ConfigError, match="exactly one of path"):
        config.loads(both, base_dir=tmp_path)


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.toml")), ids=lambda p: p.name)
def test_every_experiment_config_is_valid(path):
    loaded = config.load(path)
    assert loaded.models and loaded.attacks and loaded.epsilons[0] == 0.0


def test_an_attack_may_run_on_the_first_images_only_but_not_the_first_attack():
    limited = SMALL_CONFIG.replace("params = { steps = 3 }", "params = { steps = 3 }\nn_examples = 5")
    assert "n_examples" not in config.loads(SMALL_CONFIG).to_dict()["attacks"][0]  # old hashes stay
    two = '[[attacks]]\nname = "fgsm"\n' + limited[limited.index("[[attacks]]"):]
    loaded = config.loads(limited.split("[[attacks]]")[0] + two)
    assert [attack.n_examples for attack in loaded.attacks] == [None, 5]
    assert loaded.to_dict()["attacks"][1]["n_examples"] == 5
    with pytest.raises(config.ConfigError, match=r"model 'a': its first attack, 'pgd', has n_examples = 5 < its"):
        config.loads(limited)
    with pytest.raises(config.ConfigError, match=r"attacks\[0\]: n_examples must be an integer >= 1, got 0"):
        config.loads(limited.replace("n_examples = 5", "n_examples = 0"))


def test_a_certified_table_names_bound_methods_and_models_and_keeps_old_hashes():
    plain = _config()
    assert plain.certified is None and "certified" not in plain.to_dict()
    assert plain.certified_for(plain.models[0]) == ()
    text = BASE.format(run_extra="", attack_extra="", train_extra="") + (
        '\n[[models]]\nname = "second"\ntrain = { model = "cnn" }\n'
        '\n[certified]\nmethods = ["ibp", "crown_ibp"]\nmodels = ["second"]\nn_examples = 200\n')
    bounded = config.loads(text)
    assert bounded.certified == config.CertifiedEntry(methods=("ibp", "crown_ibp"), models=("second",),
                                                      n_examples=200, batch_size=100)
    assert [bounded.certified_for(entry) for entry in bounded.models] == [(), ("ibp", "crown_ibp")]
    assert bounded.to_dict()["certified"]["methods"] == ["ibp", "crown_ibp"] and bounded.hash() != plain.hash()
    every = config.loads(BASE.format(run_extra="", attack_extra="", train_extra="") + "\n[certified]\n")
    assert every.certified_for(every.models[0]) == ("crown_ibp",)


def test_the_config_knows_the_bound_methods_of_defenses_bounds():
    from defenses import bounds

    assert config.CERTIFIED_METHODS == bounds.METHODS


@pytest.mark.parametrize("table, match", [
    ('methods = ["smoothing"]', r"\[certified\] methods: unknown bound method 'smoothing'; choose from: ibp, "
                                r"crown_ibp \(randomized smoothing certifies another classifier"),
    ('methods = "ibp"', r"\[certified\] methods must be a non-empty list"),
    ('methods = []', r"\[certified\] methods must be a non-empty list"),
    ('methods = ["ibp", "ibp"]', r"each method may appear once"),
    ('models = ["nobody"]', r"\[certified\] models: \['nobody'\] are not models of the run \(first\)"),
    ("n_examples = 0", r"\[certified\] n_examples must be an integer >= 1, got 0"),
    ("batch_size = 1.5", r"\[certified\] batch_size must be an integer >= 1, got 1.5"),
    ("sigma = 0.25", r"\[certified\]: unknown key\(s\) \['sigma'\]"),
])
def test_a_bad_certified_table_is_refused_naming_the_key(table, match):
    with pytest.raises(config.ConfigError, match=match):
        config.loads(BASE.format(run_extra="", attack_extra="", train_extra="") + f"\n[certified]\n{table}\n")


def test_a_certified_vgg19_is_refused_before_it_trains():
    text = BASE.format(run_extra="", attack_extra="", train_extra="") + (
        '\n[[models]]\nname = "vgg"\ntrain = { model = "vgg19", weights = "none" }\n\n[certified]\n')
    with pytest.raises(config.ConfigError, match=r"\[certified\]: model 'vgg' is a vgg19 transfer model, whose "
                                                 r"layers have no bounds"):
        config.loads(text)
    assert config.loads(text.replace("[certified]\n", '[certified]\nmodels = ["first"]\n')).certified is not None


def test_a_resolved_config_reads_back_with_its_hash():
    import json

    text = BASE.format(run_extra="", attack_extra="", train_extra="") + (
        '\n[[models]]\nname = "second"\nattacks = ["pgd"]\ntrain = { model = "cnn" }\n'
        '\n[certified]\nmethods = ["ibp"]\nmodels = ["second"]\n')
    for original in (_config(), config.loads(text)):
        again = config.RunConfig.from_resolved(json.loads(json.dumps(original.to_dict())))
        assert again == original and again.hash() == original.hash()
