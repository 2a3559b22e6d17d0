"""The batched two-Gaussian fit and PAA's scheme (c) against scikit-learn's GaussianMixture, as mmdet uses it."""
import warnings

import numpy as np
import pytest
import torch

from mmkd.models.task_modules import fit_two_gaussians, paa_positive_mask

skm = pytest.importorskip('sklearn.mixture')


def sklearn_positives(costs: np.ndarray):
    """mmdet's per-GT path: sklearn fit on float32 costs, scheme (c) on predict / score_samples."""
    x = costs.astype(np.float32).reshape(-1, 1)
    gmm = skm.GaussianMixture(
        2,
        weights_init=np.array([0.5, 0.5]),
        means_init=np.array([x.min(), x.max()]).reshape(2, 1),
        precisions_init=np.ones((2, 1)),
        covariance_type='diag')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # ConvergenceWarning after max_iter
        gmm.fit(x)
    low = gmm.predict(x) == 0
    positives = np.zeros(len(x), bool)
    if low.any():
        threshold = np.argmax(gmm.score_samples(x)[low])
        positives[np.nonzero(low)[0][:threshold + 1]] = True
    return positives, gmm


def random_rows(rng, num_rows):
    rows = []
    for i in range(num_rows):
        n = int(rng.integers(2, 46))
        kind = i % 4
        if kind == 0:
            c = rng.gamma(2.0, 1.0, n)
        elif kind == 1:  # two well separated modes
            c = np.concatenate([rng.normal(0.5, 0.1, n // 2), rng.normal(2.5, 0.3, n - n // 2)])
        elif kind == 2:
            c = rng.uniform(1.0, 4.0, n)
        else:  # the scale of costs with freshly initialised 80-class heads
            c = rng.normal(11.5, 0.4, n)
        rows.append(np.sort(c.astype(np.float32)))
    return rows


def padded(rows, width=45):
    costs = torch.zeros(len(rows), width)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for r, c in enumerate(rows):
        costs[r, :len(c)] = torch.from_numpy(c)
        mask[r, :len(c)] = True
    return costs, mask


def test_same_positives_and_parameters_as_sklearn():
    rows = random_rows(np.random.default_rng(0), 300)
    costs, mask = padded(rows)
    positives, fit = paa_positive_mask(costs, mask)
    compared = 0
    for r, row in enumerate(rows):
        try:
            expected, gmm = sklearn_positives(row)
        except ValueError:  # sklearn's "ill-defined empirical covariance": checked in the next test
            continue
        compared += 1
        np.testing.assert_array_equal(positives[r, :len(row)].numpy(), expected, err_msg=f'row {r}')
        assert not positives[r, len(row):].any()
        assert fit.n_iter[r].item() == gmm.n_iter_, f'row {r}'
        # sklearn squares the float32 costs in float32 (relative error ~6e-8 of x^2 in its variances)
        np.testing.assert_allclose(fit.means[r].numpy(), gmm.means_.ravel(), rtol=1e-5)
        np.testing.assert_allclose(fit.weights[r].numpy(), gmm.weights_, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(fit.variances[r].numpy(), gmm.covariances_.ravel(), rtol=1e-3, atol=2e-5)
    assert compared >= 280


def test_rows_where_sklearn_raises_are_fitted():
    # identical costs: sklearn's E[x^2] - mean^2 with x^2 in float32
    # falls below -reg_covar and it raises; the fit here succeeds with every variance >= reg_covar
    rows = [np.full(9, v, np.float32) for v in (7.77, 13.3, 17.9)]
    raised = 0
    for row in rows:
        with pytest.raises(ValueError, match='ill-defined empirical covariance'):
            sklearn_positives(row)
        raised += 1
    rows.append(np.array([3.0, 11.0, 11.0, 11.0, 11.0, 11.0], np.float32))  # a component collapsed on one cost
    costs, mask = padded(rows, 12)
    positives, fit = paa_positive_mask(costs, mask)
    assert torch.isfinite(fit.variances).all() and (fit.variances >= 1e-6).all()
    # identical costs: only the first candidate is positive
    for r in range(3):
        assert positives[r].tolist() == [True] + [False] * 11
    # the lone low cost is its own component and the only positive
    assert positives[3].tolist() == [True] + [False] * 11


def test_degenerate_rows_never_raise():
    costs = torch.tensor([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [1.0, 2.0, 0.0], [float('nan'), 1.0, 1.0],
                          [float('inf'), 0.0, 0.0]])
    mask = torch.tensor([[False] * 3, [True, False, False], [True, True, False], [True, True, True],
                         [True, False, False]])
    positives, fit = paa_positive_mask(costs, mask)
    assert positives[0].sum() == 0 and positives[1].sum() == 0  # no candidate / a single one: no positive
    assert fit.n_iter[0] == 0 and fit.n_iter[1] == 0 and fit.n_iter[4] == 0
    assert positives[2].tolist() == [True, False, False]  # two costs: the lower one
    # a NaN cost is ignored: the two remaining equal costs give the first of them
    assert positives[3].tolist() == [False, True, False]
    empty = paa_positive_mask(torch.zeros(0, 45), torch.zeros(0, 45, dtype=torch.bool))[0]
    assert empty.shape == (0, 45)


def test_each_row_stops_on_its_own():
    rows = random_rows(np.random.default_rng(1), 40)
    costs, mask = padded(rows)
    together = fit_two_gaussians(costs, mask)
    for r in range(len(rows)):
        alone = fit_two_gaussians(costs[r:r + 1], mask[r:r + 1])
        assert alone.n_iter.item() == together.n_iter[r].item()
        torch.testing.assert_close(alone.means[0], together.means[r], rtol=1e-12, atol=1e-12)


def test_max_iter_and_dtypes():
    rows = random_rows(np.random.default_rng(2), 20)
    costs, mask = padded(rows)
    fit = fit_two_gaussians(costs, mask, max_iter=2)
    assert fit.n_iter.max() == 2 and not fit.converged[fit.n_iter == 2].all()
    assert fit.means.dtype == torch.float64
    half = paa_positive_mask(costs.half(), mask)[0]
    assert half.shape == costs.shape
    with pytest.raises(ValueError, match=r'costs .*\(20, 45\).* mask .*\(20, 44\)'):
        fit_two_gaussians(costs, mask[:, :-1])


def test_large_costs_are_fitted_in_any_dtype():
    """Costs whose square overflows the costs' dtype (float16 from 256 on, float32 from ~1.8e19 on: a diverging
    network) are fitted as their float64 values, as scikit-learn fits mmdet's float16 costs; they used to make
    the whole fit NaN and leave the GT box without positives."""
    rng = np.random.default_rng(3)
    low, high = np.sort(rng.normal(300.0, 4.0, 6)), np.sort(rng.normal(420.0, 10.0, 10))
    row = np.concatenate([low, high]).astype(np.float16).astype(np.float64)
    mask = torch.ones(1, len(row), dtype=torch.bool)
    expected, gmm = sklearn_positives(row)
    assert 1 <= expected.sum() < len(row)
    half, fit = paa_positive_mask(torch.from_numpy(row).half().unsqueeze(0), mask)
    assert half[0].tolist() == expected.tolist()
    np.testing.assert_allclose(fit.means[0].numpy(), gmm.means_[:, 0], rtol=1e-5)
    # float32 costs of 1e20 and more: the same split as the same costs scaled down to ordinary values
    scaled = torch.from_numpy(row).float().unsqueeze(0)
    for scale in (1e18, 1e30):
        huge, fit = paa_positive_mask(scaled * scale, mask)
        assert huge[0].tolist() == expected.tolist(), scale
        assert torch.isfinite(fit.means).all() and fit.converged.all()
