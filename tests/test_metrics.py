"""The challenge metrics, on hand-computed cases and against scikit-learn."""

import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score, fbeta_score, precision_score, recall_score

from schemas.firewall import CLASS_NAMES
from tasks.metrics import (
    confusion_matrix,
    default_cost_matrix,
    evaluate_labels,
    per_class_report,
    plot_confusion,
)

N, D, IP, NM, PS = CLASS_NAMES


def test_perfect_predictions() -> None:
    truth = [N] * 10 + [D, IP, NM, PS]
    result = evaluate_labels(truth, truth)
    assert (result.precision, result.recall, result.f1, result.fbeta) == (1.0, 1.0, 1.0, 1.0)
    assert result.far == 0.0 and result.cost == 0.0
    assert result.criterion == pytest.approx(0.3 + 0.7 * 1.0)


def test_all_normal_predictions_by_hand() -> None:
    truth = [N] * 90 + [D] * 2 + [IP] * 5 + [NM] * 1 + [PS] * 2
    result = evaluate_labels(truth, [N] * 100)
    normal_f2 = 5 * 0.9 * 1.0 / (4 * 0.9 + 1.0)
    assert result.fbeta == pytest.approx(normal_f2 / 5)
    assert result.precision == pytest.approx(0.9 / 5) and result.recall == pytest.approx(1 / 5)
    assert result.far == 0.0
    assert result.cost == 2 * 2 + 5 + 1 + 2  # a DDoS missed as Normal costs 2
    expected = 0.3 * (1 - math.log(12) / math.log(2 * 100)) + 0.7 * normal_f2 / 5
    assert result.criterion == pytest.approx(expected)


def test_a_class_never_present_nor_predicted_scores_zero() -> None:
    truth = [N] * 6 + [D, IP, PS]
    result = evaluate_labels(truth, truth)
    assert result.per_class[NM]["fbeta"] == 0.0 and result.per_class[NM]["support"] == 0
    assert result.fbeta == pytest.approx(4 / 5)


def test_zero_cost_criterion_is_alpha_plus_weighted_fbeta() -> None:
    truth = [N] * 6 + [D, IP, PS]
    assert evaluate_labels(truth, truth).criterion == pytest.approx(0.3 + 0.7 * 0.8)


def test_cost_matrix_prices_ddos_errors_double() -> None:
    cost = default_cost_matrix()
    index = {name: i for i, name in enumerate(CLASS_NAMES)}
    assert cost[index[N], index[D]] == 2 and cost[index[IP], index[D]] == 2  # false DDoS alarms
    assert cost[index[D], index[N]] == 2  # a DDoS missed as Normal
    assert (
        cost[index[D], index[IP]] == 1 and cost[index[N], index[IP]] == 1 and cost[index[PS], index[N]] == 1
    )
    assert np.diag(cost).sum() == 0
    result = evaluate_labels([N, IP, D, D, PS], [D, D, N, IP, N])
    assert result.cost == 2 + 2 + 2 + 1 + 1


def test_false_alarm_rate() -> None:
    truth = [N] * 8 + [IP] * 2
    predicted = [N] * 6 + [IP, D] + [N, IP]
    assert evaluate_labels(truth, predicted).far == pytest.approx(2 / 8)


def test_agrees_with_scikit_learn_where_definitions_coincide() -> None:
    rng = np.random.default_rng(1)
    truth = rng.choice(CLASS_NAMES, 2_000, p=[0.8, 0.05, 0.08, 0.03, 0.04])
    predicted = np.where(rng.random(2_000) < 0.7, truth, rng.choice(CLASS_NAMES, 2_000))
    result = evaluate_labels(truth, predicted)
    common = {"labels": list(CLASS_NAMES), "average": "macro", "zero_division": 0}
    assert result.fbeta == pytest.approx(fbeta_score(truth, predicted, beta=2, **common))
    assert result.f1 == pytest.approx(f1_score(truth, predicted, **common))
    assert result.precision == pytest.approx(precision_score(truth, predicted, **common))
    assert result.recall == pytest.approx(recall_score(truth, predicted, **common))


def test_confusion_rows_are_truth_and_names_are_checked() -> None:
    matrix = confusion_matrix(np.array([N, N, D]), np.array([D, N, D]))
    assert matrix[0, 1] == 1 and matrix[0, 0] == 1 and matrix[1, 1] == 1 and matrix.sum() == 3
    with pytest.raises(ValueError, match="not class names"):
        confusion_matrix(np.array(["normal"]), np.array([N]))
    with pytest.raises(ValueError, match="true labels"):
        evaluate_labels([N, N], [N])


def test_report_and_pictures(tmp_path: Path) -> None:
    result = evaluate_labels([N, N, D, IP, NM, PS], [N, D, D, IP, PS, PS])
    report = per_class_report(result)
    assert all(name in report for name in CLASS_NAMES)
    for normalised in (False, True):
        path = plot_confusion(result, "test", tmp_path / f"cm-{normalised}.png", normalised)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000
