"""The Fréchet distance between two Gaussians fitted to feature sets (FID, FVD, rFID, rFVD)."""
from __future__ import annotations

import numpy as np


def gaussian_statistics(features: np.ndarray, covariance: str = "unbiased") -> dict:
    """Mean and covariance of (n, d) features, and whether n is large enough for a full-rank covariance.
    covariance: "unbiased" divides by n - 1 (np.cov; pytorch-fid, the ADM evaluator, torch-fidelity), "biased" by n
    (StyleGAN-V's FeatureStats)."""
    features = np.asarray(features, dtype=np.float64)
    n, d = features.shape
    if n < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {n}")
    if covariance not in ("unbiased", "biased"):
        raise ValueError(f"covariance must be 'unbiased' or 'biased', got {covariance!r}")
    # one feature: np.cov gives a 0-d array
    sigma = np.atleast_2d(np.cov(features, rowvar=False, ddof=1 if covariance == "unbiased" else 0))
    return {"mu": features.mean(0), "sigma": sigma, "n": n, "dim": d,
            "full_rank": n > d}


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), computed with symmetric eigendecompositions."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics differ in shape: {mu1.shape} vs {mu2.shape}, {sigma1.shape} vs {sigma2.shape}")
    w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def frechet_from_features(a: np.ndarray, b: np.ndarray, covariance: str = "unbiased") -> dict:
    sa, sb = gaussian_statistics(a, covariance), gaussian_statistics(b, covariance)
    return {"value": frechet_distance(sa["mu"], sa["sigma"], sb["mu"], sb["sigma"]),
            "n": [sa["n"], sb["n"]], "dim": sa["dim"], "full_rank_covariance": sa["full_rank"] and sb["full_rank"]}
