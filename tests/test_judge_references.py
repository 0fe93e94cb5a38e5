"""The reference points beside a class-consistency share and the judge's feature-space distance."""
import dataclasses

import numpy as np
import pytest
import torch

from eval.classifier import PRESETS, RealData, load_or_train
from eval.judge_references import FeatureSpace, class_items, reference_points, reference_sets
from shared.data import EmbeddedPhotos


def test_class_items_draws_each_known_class_of_the_embedded_photos():
    data = RealData("image", "embedded", resolution=16)
    known = data.known_classes()
    pixels, labels = class_items(data, known, per_class=2)
    assert pixels.shape == (2 * len(known), 3, 1, 16, 16)
    assert labels.tolist() == [c for c in known for _ in range(2)]  # class-major
    again, _ = class_items(data, known, per_class=2)
    other, _ = class_items(data, known, per_class=2, draw=1)
    assert torch.equal(pixels, again) and not torch.equal(pixels, other)  # seeded; another draw differs
    # each item is a crop of the photo its label names
    names = [EmbeddedPhotos.classes[c] for c in labels.tolist()]
    assert len(set(names)) == len(known)


def test_reference_sets_are_built_from_the_items_as_described():
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(6, 3, 4, 8, 8, generator=g) * 2 - 1
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    pool_labels = torch.tensor([0] * 5 + [1] * 5)
    pool = torch.rand(10, 3, 4, 8, 8, generator=g) * 2 - 1
    sets = reference_sets(pixels, labels, "video", (pool, pool_labels))
    assert set(sets) == {"flat_colour", "class_average", "still", "real"}
    assert all(x.shape == pixels.shape and torch.equal(y, labels) for x, y in sets.values())
    flat, average = sets["flat_colour"][0], sets["class_average"][0]
    assert torch.allclose(flat, flat[:, :, :1, :1, :1].expand_as(flat))  # one colour per item
    assert torch.allclose(flat[:, :, 0, 0, 0], average.mean(dim=(2, 3, 4)))
    # a class average lies inside the range of its class's pool and is smoother than its items
    for c in (0, 1):
        members = pool[pool_labels == c]
        assert (average[labels == c] <= members.max(0).values + 1e-6).all()
        assert (average[labels == c] >= members.min(0).values - 1e-6).all()
        assert average[labels == c].std() < members.std()
        assert not torch.equal(average[labels == c][0], average[labels == c][1])  # each item its own resample
    still = sets["still"][0]
    assert torch.equal(still[:, :, 3], pixels[:, :, 0]) and torch.equal(still[:, :, 0], pixels[:, :, 0])
    assert "still" not in reference_sets(pixels[:, :, :1], labels, "image", (pool[:, :, :1], pool_labels))


def test_feature_space_distance_is_zero_against_itself_and_grows_with_a_shift():
    g = np.random.default_rng(0)
    fit, reference = g.normal(size=(200, 16)), g.normal(size=(200, 16))
    space = FeatureSpace(fit, reference, dim=8)
    assert space.dim == 8
    same = space.distance(reference)
    assert same["frechet"] == pytest.approx(0, abs=1e-6) and same["precision"] == 1 and same["recall"] == 1
    near, far = space.distance(g.normal(size=(200, 16))), space.distance(g.normal(size=(200, 16)) + 3)
    assert near["frechet"] < far["frechet"] and far["precision"] < near["precision"]
    assert near["full_rank_covariance"]
    assert FeatureSpace(fit[:5], reference[:4], dim=32).dim == 2  # capped by the item counts


@pytest.mark.parametrize("quantizer", ["vq", "kl"])  # the LM's VQVAE, the diffusion models' VAE
def test_reference_points_score_every_point_with_the_judge(tmp_path, quantizer):
    from tokenizer import OmniTokenizer

    data = RealData("image", "embedded", resolution=16)
    cfg = dataclasses.replace(PRESETS["tiny"]["image"], steps=10, held_out=16)
    net, record = load_or_train(data, cfg, tmp_path / "cache", progress=False)
    folder = OmniTokenizer.from_scale("tiny", quantizer=quantizer).save_pretrained(tmp_path / "tok")
    points, space = reference_points(net, data, record["known_classes"], record["classes"], 2, str(folder))
    assert set(points) == {"flat_colour", "class_average", "real", "reconstruction"}
    n = 2 * len(record["known_classes"])
    for point in points.values():
        assert point["n"] == n and 0 <= point["share"] <= 1 and len(point["per_class"]) == len(record["known_classes"])
        assert point["feature_distance"]["n"] == [n, n] and point["feature_distance"]["frechet"] >= 0
    assert space.dim <= n - 2
    # the caller's own copy of draw 0 gives the same points as the draw made inside
    items = class_items(data, record["known_classes"], 2, draw=0)
    again, _ = reference_points(net, data, record["known_classes"], record["classes"], 2, str(folder), items=items)
    assert again == points
