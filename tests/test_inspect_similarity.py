"""Subspace similarity phi of the LoRA paper."""
import numpy as np
import pytest
import torch
from torch import nn

import ranklab
from ranklab.inspect import (
    module_similarity,
    row_space_basis,
    similarity_grid,
    subspace_similarity,
)


def _orthonormal(d, k, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, k)))
    return q


def test_known_values():
    eye = np.eye(6)
    assert subspace_similarity(eye[:, :3], eye[:, :3], 3, 3) == pytest.approx(1.0)
    assert subspace_similarity(eye[:, :3], eye[:, 3:], 3, 3) == pytest.approx(0.0)
    # e1 against span(e1+e2)/sqrt2: overlap 1/2
    u2 = np.zeros((6, 1)); u2[:2, 0] = 1 / np.sqrt(2)
    assert subspace_similarity(eye[:, :1], u2, 1, 1) == pytest.approx(0.5)
    # span(e1, e2) vs span(e1, e3): ||U1^T U2||^2 = 1, min(i, j) = 2
    assert subspace_similarity(eye[:, [0, 1]], eye[:, [0, 2]], 2, 2) == pytest.approx(0.5)


def test_grid_matches_direct_formula():
    u1, u2 = _orthonormal(20, 5, 0), _orthonormal(20, 7, 1)
    grid = similarity_grid(u1, u2)
    assert grid.shape == (5, 7)
    for i in range(1, 6):
        for j in range(1, 8):
            direct = np.linalg.norm(u1[:, :i].T @ u2[:, :j]) ** 2 / min(i, j)
            assert grid[i - 1, j - 1] == pytest.approx(direct)
    assert np.all((grid >= -1e-12) & (grid <= 1 + 1e-12))
    with pytest.raises(ValueError, match="different spaces"):
        similarity_grid(u1, _orthonormal(10, 2, 0))
    with pytest.raises(ValueError, match="max_i"):
        similarity_grid(u1, u2, max_i=9)


def test_dylora_low_rank_subspace_inside_high_rank():
    torch.manual_seed(0)
    model = nn.Module()
    model.lin = nn.Linear(30, 20)
    ranklab.attach(model, ranklab.make_config("dylora", r_min=1, r_max=8, target_modules=["lin"]))
    nn.init.normal_(model.lin.lora_B)
    model.double()  # float64 so "inside" holds to 1e-9
    grid = module_similarity(model.lin, side="right", selector1={"rank": 3}, selector2={"rank": 8})
    assert grid.shape == (3, 8)
    # the right singular space of ΔW at rank 3 is the row space of A[:3], inside that of A[:8]
    assert grid[2, 7] == pytest.approx(1.0, abs=1e-9)
    left = module_similarity(model.lin, side="left", selector1={"rank": 3}, selector2={"rank": 8})
    assert left[2, 7] == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="side"):
        module_similarity(model.lin, side="up")


def test_row_space_basis_of_raw_matrix():
    a = np.random.default_rng(3).normal(size=(4, 12))
    basis = row_space_basis(a)
    assert basis.shape == (12, 4)
    np.testing.assert_allclose(basis.T @ basis, np.eye(4), atol=1e-12)
    assert subspace_similarity(basis, row_space_basis(2.0 * a[::-1]), 4, 4) == pytest.approx(1.0)
