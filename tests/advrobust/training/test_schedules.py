"""advrobust.training.schedules: learning-rate schedules, their values and their validation."""

from __future__ import annotations

import math

import pytest

from advrobust import training


def test_constant_keeps_the_base_rate():
    assert [training.learning_rate_at("constant", 0.01, epoch, 5) for epoch in range(5)] == [0.01] * 5


def test_cosine_starts_at_the_base_halves_midway_and_decreases_to_above_zero():
    rates = [training.learning_rate_at("cosine", 1e-3, epoch, 10) for epoch in range(10)]
    assert rates[0] == 1e-3
    assert math.isclose(rates[5], 0.5e-3)
    assert all(later < earlier for earlier, later in zip(rates, rates[1:]))
    assert rates[-1] > 0


def test_piecewise_divides_by_ten_at_half_and_by_a_hundred_at_three_quarters():
    rates = [training.learning_rate_at("piecewise", 0.1, epoch, 8) for epoch in range(8)]
    assert rates == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)


def test_a_hold_keeps_the_base_rate_then_runs_the_schedule_over_the_remaining_epochs():
    held = [training.learning_rate_at("piecewise", 0.1, epoch, 11, hold=3) for epoch in range(11)]
    assert held == pytest.approx([0.1] * 3 + [training.learning_rate_at("piecewise", 0.1, e, 8) for e in range(8)])
    cosine = [training.learning_rate_at("cosine", 1.0, epoch, 6, hold=2) for epoch in range(6)]
    assert cosine[:3] == [1.0, 1.0, 1.0] and cosine[3] < 1.0
    # A hold as long as the training leaves the schedule only the last epoch, at the base rate.
    assert [training.learning_rate_at("piecewise", 0.1, epoch, 3, hold=5) for epoch in range(3)] == [0.1] * 3
    with pytest.raises(ValueError, match="hold must be >= 0"):
        training.learning_rate_at("cosine", 0.1, 0, 3, hold=-1)
    (scheduler,) = training.schedule_callbacks("piecewise", 0.1, 11, hold=3)
    assert scheduler.schedule(7, 0.1) == pytest.approx(held[7])


def test_an_unknown_schedule_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="constant.*cosine.*piecewise"):
        training.learning_rate_at("linear", 1e-3, 0, 5)
    with pytest.raises(ValueError, match="constant.*cosine.*piecewise"):
        training.TrainConfig(lr_schedule="linear")


def test_constant_adds_no_callback_and_the_others_one_scheduler():
    assert training.schedule_callbacks("constant", 1e-3, 5) == []
    for schedule in ("cosine", "piecewise"):
        (scheduler,) = training.schedule_callbacks(schedule, 1e-3, 5)
        assert scheduler.schedule(3, 1e-3) == training.learning_rate_at(schedule, 1e-3, 3, 5)
