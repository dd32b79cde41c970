"""Rank measures on matrices whose answers are known by hand."""
import math

import numpy as np
import pytest
import torch

from ranklab.inspect import (
    effective_rank,
    energy_rank,
    frobenius_norm,
    numerical_rank,
    rank_measures,
    spectral_entropy,
    stable_rank,
)


def _svdvals(matrix):
    return torch.linalg.svdvals(torch.as_tensor(matrix, dtype=torch.float64))


def test_identity_has_full_rank_everywhere():
    sigma = _svdvals(np.eye(7))
    assert effective_rank(sigma) == pytest.approx(7.0)
    assert stable_rank(sigma) == pytest.approx(7.0)
    assert numerical_rank(sigma) == 7
    assert energy_rank(sigma, tau=0.9) == 7  # 6/7 < 0.9 <= 7/7
    assert energy_rank(np.ones(10), tau=0.9) == 9  # exactly 0.9 counts despite rounding
    assert spectral_entropy(sigma) == pytest.approx(1.0)


def test_rank_one_matrix():
    rng = np.random.default_rng(0)
    sigma = _svdvals(np.outer(rng.normal(size=6), rng.normal(size=5)))
    assert effective_rank(sigma) == pytest.approx(1.0, abs=1e-6)
    assert stable_rank(sigma) == pytest.approx(1.0, abs=1e-6)
    assert energy_rank(sigma) == 1
    assert numerical_rank(sigma) == 1


def test_hand_computed_spectrum():
    sigma = [3.0, 1.0]  # p = (3/4, 1/4)
    expected_erank = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert effective_rank(sigma) == pytest.approx(expected_erank)  # 1.7548...
    assert effective_rank([1.0, 3.0]) == pytest.approx(expected_erank)  # order does not matter
    assert stable_rank(sigma) == pytest.approx(10.0 / 9.0)
    assert energy_rank(sigma, tau=0.9) == 1  # 9/10 of the energy in sigma_1
    assert energy_rank(sigma, tau=0.95) == 2
    assert frobenius_norm(sigma) == pytest.approx(math.sqrt(10.0))
    assert numerical_rank([1.0, 1e-3, 1e-9], tol=1e-6) == 2
    assert numerical_rank([1.0, 1e-3, 1e-9], tol=1e-2, relative=False) == 1
    assert spectral_entropy(sigma) == pytest.approx(math.log(expected_erank) / math.log(2))


def test_zero_spectrum_is_rank_zero():
    for sigma in (np.zeros(4), [], torch.zeros(3)):
        assert effective_rank(sigma) == 0.0
        assert stable_rank(sigma) == 0.0
        assert energy_rank(sigma) == 0
        assert numerical_rank(sigma) == 0
    measures = rank_measures(np.zeros(3))
    assert measures == {"effective_rank": 0.0, "stable_rank": 0.0, "energy_rank": 0,
                        "numerical_rank": 0, "delta_fro": 0.0}


def test_bad_input():
    with pytest.raises(ValueError, match="tau"):
        energy_rank([1.0], tau=0.0)
    with pytest.raises(ValueError, match=">= 0"):
        effective_rank([1.0, -1.0])
    with pytest.raises(ValueError, match="tol"):
        numerical_rank([1.0], tol=-1)
