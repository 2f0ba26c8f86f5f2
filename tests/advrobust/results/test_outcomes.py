"""advrobust.results.outcomes: per-example outcomes saved and read back from a run folder,
compared image by image and per class."""

import json

import numpy as np
import pytest

from advrobust.evaluation.stats import compare_paired
from advrobust.results import outcomes
from tests.advrobust.conftest import LABELS, make_outcomes, make_run_folder


def test_outcomes_survive_the_round_trip_through_a_run_folder(tmp_path):
    saved = make_outcomes("pgd-at", 300)
    make_run_folder(tmp_path, saved, make_outcomes("nsl", 200, seed=1))
    loaded = outcomes.load(tmp_path, "pgd-at")
    assert (loaded.name, loaded.dataset, loaded.norm, loaded.n) == ("pgd-at", "fashion_mnist", "inf", 300)
    np.testing.assert_array_equal(loaded.clean, saved.clean)
    np.testing.assert_array_equal(loaded.worst, saved.worst)
    assert list(loaded.per_attack) == list(saved.per_attack)
    np.testing.assert_array_equal(loaded.per_attack["fgsm {}"], saved.per_attack["fgsm {}"])


def test_compare_pairs_the_images_both_models_saw(tmp_path):
    first = make_outcomes("w1", 300, epsilons=(0.0, 0.05, 0.1))
    second = make_outcomes("w2", 200, epsilons=(0.0, 0.1, 0.2), seed=5)
    comparison = outcomes.compare(first, second)
    assert comparison["n_examples"] == 200 and (comparison["first"], comparison["second"]) == ("w1", "w2")
    assert [row["eps"] for row in comparison["rows"]] == [None, 0.0, 0.1]  # eps both were attacked at
    expected = compare_paired(first.worst[2][:200], second.worst[1][:200])
    row = comparison["rows"][2]
    assert row["first"] == expected.first and row["difference"] == expected.difference
    assert (row["ci95_low"], row["ci95_high"], row["p_value"]) == (expected.ci95_low, expected.ci95_high,
                                                                   expected.p_value)
    text = outcomes.format_comparison(comparison)
    assert "w2 vs w1 on the first 200 fashion_mnist test images" in text and "eps 0.1" in text
    # At eps 0 the worst case is the clean outcome here: the table leaves out the repeated row.
    assert [line[:10].strip() for line in text.splitlines()[2:-1]] == ["clean", "eps 0.1"]
    changed = dict(comparison, rows=[dict(row) for row in comparison["rows"]])
    changed["rows"][1]["only_second"] += 1  # an eps-0 row that differs from the clean one stays
    assert len(outcomes.distinct_rows(changed["rows"])) == 3 and len(outcomes.distinct_rows(comparison["rows"])) == 2


def test_compare_warns_when_the_worst_cases_are_over_different_attacks():
    first, second = make_outcomes("a", 50), make_outcomes("b", 50, seed=1)
    assert outcomes.compare(first, second)["same_attacks"]
    assert "WARNING" not in outcomes.format_comparison(outcomes.compare(first, second))
    fewer = outcomes.Outcomes(**{**second.__dict__, "per_attack": {"fgsm {}": second.worst}})
    comparison = outcomes.compare(first, fewer)
    assert not comparison["same_attacks"] and comparison["attacks"]["second"] == ["fgsm {}"]
    assert "WARNING: the two worst cases are over different attacks" in outcomes.format_comparison(comparison)


@pytest.mark.parametrize("second, match", [
    (make_outcomes("m", 100, dataset="mnist"), "evaluated on fashion_mnist and 'm' on mnist: not the same test images"),
    (make_outcomes("m", 100, norm="l2"), "attacked in inf and 'm' in l2"),
])
def test_compare_refuses_models_not_evaluated_alike(second, match):
    with pytest.raises(ValueError, match=match):
        outcomes.compare(make_outcomes("first", 100), second)


def test_load_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a finished `advrobust run` folder"):
        outcomes.load(tmp_path / "nowhere")
    make_run_folder(tmp_path, make_outcomes("a", 10), make_outcomes("b", 10))
    with pytest.raises(ValueError, match="holds 2 models; name one as .*, one of: a, b"):
        outcomes.load(tmp_path)
    with pytest.raises(ValueError, match="no model 'c' in .*; choose one of: a, b"):
        outcomes.load(tmp_path, "c")
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.json").write_text(json.dumps({"models": [{"name": "a"}]}))
    with pytest.raises(FileNotFoundError, match="no per-example outcomes for 'a'.*--resume` writes them"):
        outcomes.load(old)


def test_per_class_counts_each_class_on_its_own_images():
    labels = np.array([0, 0, 0, 1, 1, 2])
    clean = np.array([1, 1, 0, 1, 0, 1], bool)
    worst = np.array([clean, [1, 0, 0, 0, 0, 1]], bool)
    saved = outcomes.Outcomes("m", "fashion_mnist", "inf", np.array([0.0, 0.1]), clean, worst, {"pgd {}": worst},
                              labels=labels)
    rows = outcomes.per_class(saved)
    assert [(row.label, row.n_examples) for row in rows] == [(0, 3), (1, 2), (2, 1)]
    assert [row.clean_accuracy for row in rows] == pytest.approx([2 / 3, 1 / 2, 1.0])
    np.testing.assert_allclose([row.robust_accuracy for row in rows], [[2 / 3, 1 / 3], [1 / 2, 0.0], [1.0, 1.0]])
    for row in rows:
        assert all(low <= value <= high for low, value, high in zip(row.ci95_low, row.robust_accuracy,
                                                                    row.ci95_high))
    # The classes' accuracies, weighted by their sizes, give back the overall ones.
    big = make_outcomes("big", 300, labels=LABELS)
    rows = outcomes.per_class(big)
    assert sum(row.n_examples for row in rows) == 300
    for k in range(2):
        assert sum(row.robust_accuracy[k] * row.n_examples for row in rows) / 300 == pytest.approx(
            big.worst[k].mean())
    with pytest.raises(ValueError, match="saved without the images' labels.*--resume"):
        outcomes.per_class(make_outcomes("old", 10))


def test_labels_survive_the_round_trip_and_files_without_them_still_load(tmp_path):
    make_run_folder(tmp_path, make_outcomes("new", 300, labels=LABELS), make_outcomes("old", 300))
    np.testing.assert_array_equal(outcomes.load(tmp_path, "new").labels, LABELS)
    assert outcomes.load(tmp_path, "old").labels is None


def test_compare_per_class_pairs_the_images_of_each_class():
    first = make_outcomes("w1", 300, labels=LABELS)
    second = make_outcomes("w2", 250, seed=5, labels=LABELS)
    comparison = outcomes.compare(first, second)
    classes = comparison["per_class"]
    assert [entry["label"] for entry in classes] == sorted(set(LABELS[:250]))
    assert sum(entry["n_examples"] for entry in classes) == 250
    members = LABELS[:250] == 6
    expected = compare_paired(first.worst[1][:250][members], second.worst[1][:250][members])
    row = next(entry for entry in classes if entry["label"] == 6)["rows"][-1]
    assert (row["eps"], row["difference"], row["only_first"], row["only_second"], row["p_value"]) == (
        0.1, expected.difference, expected.only_first, expected.only_second, expected.p_value)
    text = outcomes.format_comparison(comparison, per_class=True)
    assert "per class (eps 0.1" in text and "\nShirt " in text and "\nAnkle boot " in text
    assert "per class" not in outcomes.format_comparison(comparison)

    assert outcomes.compare(first, make_outcomes("old", 300))["per_class"] is None
    assert "per class: not available" in outcomes.format_comparison(
        outcomes.compare(first, make_outcomes("old", 300)), per_class=True)
    with pytest.raises(ValueError, match="other labels for the same first 300 images"):
        outcomes.compare(first, make_outcomes("shuffled", 300, labels=LABELS[::-1]))
