"""eval.novelty: each sample's nearest training item, beside fresh real items'."""
import json

import pytest
import torch
import torch.nn.functional as F

from eval import novelty
from eval.novelty import nearer_than_fresh, nearest_agreement, nearest_euclidean
from shared.media import sample_path, write_sample
from shared.provenance import file_sha256


def test_nearest_euclidean_finds_the_closest_row_by_hand():
    bank = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    queries = torch.tensor([[3.0, 3.0], [9.0, 0.0], [0.0, 0.0]])
    dist, index = nearest_euclidean(queries, bank, chunk=2)
    assert index.tolist() == [1, 2, 0]
    assert torch.allclose(dist, torch.tensor([1.0, 1.0, 0.0]))


def test_nearest_agreement_counts_equal_positions_by_hand():
    bank = torch.tensor([[1, 2, 3, 4], [1, 1, 1, 1], [5, 6, 7, 8]])
    queries = torch.tensor([[1, 2, 3, 9], [1, 1, 0, 0], [5, 6, 7, 8], [0, 0, 0, 0]])
    agreement, index = nearest_agreement(queries, bank, chunk=3)
    assert agreement.tolist() == [0.75, 0.5, 1.0, 0.0]
    assert index[:3].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="code rows"):
        nearest_agreement(queries[:, :3], bank)


def test_a_lookup_table_is_all_copies_and_fresh_items_are_the_quantile():
    fresh = torch.linspace(1, 2, 101)
    copies = nearer_than_fresh(torch.zeros(20), fresh)
    assert copies["nearer_than_fresh"] == 1.0 and copies["median"] == 0.0
    assert copies["fresh_nearer_than_fresh"] == pytest.approx(0.05, abs=0.01)
    assert nearer_than_fresh(fresh.flip(0), fresh)["nearer_than_fresh"] == pytest.approx(0.05, abs=0.01)
    assert nearer_than_fresh(torch.full((5,), 3.0), fresh)["nearer_than_fresh"] == 0.0


def fake_generator(tmp_path, tok_dir, codes, pixels, labels):
    """A run folder whose summary names the codes and tokenizer, and a samples record of `pixels` at guidance 1."""
    run = tmp_path / "run"
    folder = run / "samples" / "cfg1"
    for i, (x, c) in enumerate(zip(pixels, labels.tolist())):
        write_sample(x, sample_path(folder, c, i, video=False))
    (run / "summary.json").write_text(json.dumps({"data": str(codes), "tokenizer": str(tok_dir),
                                                  "tokenizer_sha256": file_sha256(tok_dir)}))
    (run / "samples" / "samples.json").write_text(json.dumps(
        {"folders": {"cfg1": {"folder": str(folder), "guidance_scale": 1.0, "n": len(pixels)}}}))
    return run


class PooledTokenizer(novelty.Representation):
    """A stand-in tokenizer whose round trip keeps what an item is (a random-init tokenizer decodes every item to
    nearly the same picture): 4 x 4 average pooling, quantised to 8 levels as codes (vq) or kept as means (kl)."""

    def __init__(self, quantizer):
        self.vq, self.dev = quantizer == "vq", torch.device("cpu")

    def encode(self, pixels):
        z = F.avg_pool3d(pixels.float(), (1, 4, 4))
        return ((z + 1) * 4).floor().clamp(0, 7).long() if self.vq else z

    def decode(self, rows, size):
        z = (rows.float() + 0.5) / 4 - 1 if self.vq else rows.float()
        z = z if z.dim() == 5 else z[:, :, None]
        return novelty.to_8bit(F.interpolate(z, scale_factor=(1, 4, 4), mode="nearest"))


def extracted(tmp_path, rep, items=24, resolution=32):
    """Embedded photos encoded by `rep` into an extraction folder, as the extractions lay them out."""
    from shared.data import open_dataset
    from shared.extraction import SeededItems, extract

    base = open_dataset("image", "embedded", "train", (resolution, resolution), 1)

    def encode(batch):
        rows = rep.encode(batch["pixels"])
        return ({"codes": rows.to(torch.int32)} if rep.vq else {"mean": rows[:, :, 0].half()}) | {
            "labels": batch["label"].long()}

    out = tmp_path / "codes"
    settings = {"kind": "image", "source": "embedded", "resolution": resolution, "frames": 1, "video_layout": None}
    extract(SeededItems(base, length=items), encode, out, settings, shard_size=8, batch_size=8)
    return out


@pytest.mark.parametrize("quantizer", ["vq", "kl"])
def test_training_items_as_samples_are_copies_and_fresh_items_are_not(tmp_path, monkeypatch, quantizer):
    from eval.classifier import RealData
    from eval.judge_references import class_items
    from shared.extraction import ShardDataset
    from tokenizer import OmniTokenizer

    rep = PooledTokenizer(quantizer)
    monkeypatch.setattr(novelty, "Representation", lambda tokenizer: rep)
    tok_dir = OmniTokenizer.from_scale("tiny", quantizer=quantizer).save_pretrained(tmp_path / "tok")
    codes = extracted(tmp_path, rep)
    rows, _ = novelty.stored_rows(codes)
    labels = ShardDataset(codes).arrays["labels"].load()
    lookup = rep.decode(rows, (1, 32, 32))  # a "generator" that returns its training items
    run = fake_generator(tmp_path / "lookup", tok_dir, codes, lookup, labels)
    cache = str(tmp_path / "judge")
    (row,) = novelty.measure([(1.0, str(run / "samples" / "cfg1"), None)], run, "tiny", per_class=16, cache=cache)["novelty"]
    assert row["n"] == len(rows) == 24
    assert row["latent"]["nearer_than_fresh"] == 1.0 and row["judge"]["nearer_than_fresh"] == 1.0
    assert row["latent"]["median"] == pytest.approx(0.0, abs=1e-6) and row["judge"]["median"] == pytest.approx(0, abs=1e-6)
    assert row["judge"]["fresh_nearer_than_fresh"] <= 0.06 and row["latent"]["fresh_median"] > 0
    if quantizer == "vq":
        assert row["codes"]["exact_copies"] == 1.0 and row["codes"]["near_copies"] == 1.0
        assert row["codes"]["fresh_near_copies"] < 0.5
    else:
        assert "codes" not in row

    # fresh real items through the tokenizer, from a draw the reference never uses: not copies
    known = sorted(set(labels.tolist()))
    real, real_labels = class_items(RealData("image", "embedded", resolution=32), known, 4, draw=7)
    fresh = novelty.through_tokenizer(rep, real, (1, 32, 32))
    run = fake_generator(tmp_path / "fresh", tok_dir, codes, fresh, real_labels)
    (row,) = novelty.measure([(1.0, str(run / "samples" / "cfg1"), None)], run, "tiny", per_class=16, cache=cache)["novelty"]
    assert row["latent"]["nearer_than_fresh"] < 0.3 and row["judge"]["nearer_than_fresh"] < 0.3
    assert row["latent"]["median"] > 0 and row["judge"]["median"] > 0


def test_a_replaced_tokenizer_is_refused(tmp_path):
    from tokenizer import OmniTokenizer

    tok_dir = OmniTokenizer.from_scale("tiny", quantizer="vq").save_pretrained(tmp_path / "tok")
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"data": str(tmp_path / "codes"), "tokenizer": str(tok_dir),
                                                  "tokenizer_sha256": "0" * 64}))
    (tmp_path / "codes").mkdir()
    (tmp_path / "codes" / "manifest.json").write_text(json.dumps({"settings": {}}))
    with pytest.raises(ValueError, match="sha256"):
        novelty.measure([(1.0, str(tmp_path), None)], run, "tiny")


def test_a_diffusion_pipelines_copy_of_the_tokenizer_decodes_its_runs_samples(tmp_path):
    """A diffusion pipeline keeps the run's tokenizer in final/vae with the latent scale in its config: its samples,
    decoded by that copy, are the run's; a pipeline whose VAE has other weights is refused."""
    from shared.provenance import file_sha256
    from tokenizer import OmniTokenizer

    tok = OmniTokenizer.from_scale("tiny", quantizer="kl")
    tok_dir = tok.save_pretrained(tmp_path / "tok")
    run = tmp_path / "run"
    tok.register_to_config(scaling_factor=1.3)
    tok.save_pretrained(run / "final" / "vae")
    summary = {"tokenizer": str(tok_dir), "tokenizer_sha256": file_sha256(tok_dir),
               "final_sha256": file_sha256(run / "final")}
    copy = file_sha256(run / "final" / "vae")
    assert copy != summary["tokenizer_sha256"]  # the scaling factor alone makes the folders hash apart
    assert novelty.run_decoders(run, summary) == {summary["tokenizer_sha256"], copy}
    assert novelty.run_decoders(tmp_path / "lm_run", summary) == {summary["tokenizer_sha256"]}  # no pipeline VAE

    torch.manual_seed(1)
    OmniTokenizer.from_scale("tiny", quantizer="kl").save_pretrained(run / "final" / "vae")
    summary["final_sha256"] = file_sha256(run / "final")
    with pytest.raises(ValueError, match="not the tokenizer the run was trained on"):
        novelty.run_decoders(run, summary)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """A small data set of one's own: random crops of four embedded photos in the ImageNet layout, train and val."""
    from shared.data import SampleKey, open_dataset

    root = tmp_path_factory.mktemp("own_photos")
    photos = open_dataset("image", "embedded", "train", (48, 48), 1)
    per_class = {"train": 12, "val": 4}
    wanted = {c: photos.classes[c] for c in sorted(photos.classes.index(n) for n in photos.names)[:4]}
    counts = {(s, c): 0 for s in per_class for c in wanted}
    for i in range(4000):
        item = photos[SampleKey(i, 777 + i, 48, 48)]
        c = int(item["label"])
        split = next((s for s in per_class if c in wanted and counts[(s, c)] < per_class[s]), None)
        if split is None:
            continue
        write_sample(item["pixels"], root / split / f"c{c}_{wanted[c]}" / f"{counts[(split, c)]:03d}.png")
        counts[(split, c)] += 1
        if all(counts[k] == per_class[s] for k in counts for s in [k[0]]):
            break
    return root


@pytest.mark.slow
def test_a_folder_of_ones_own_goes_through_extraction_training_sampling_and_novelty(photo_folder, tmp_path):
    from lm_generation import extract_codes, sample as sample_cli
    from lm_generation.config import lm_config
    from lm_generation.train import train
    from tokenizer import OmniTokenizer

    tok = OmniTokenizer.from_scale("tiny", quantizer="vq").save_pretrained(tmp_path / "tok")
    codes = tmp_path / "codes"
    extract_codes.main(["--tokenizer", str(tok), "--images", str(photo_folder), "--out", str(codes), "--scale", "tiny",
                        "--precision", "fp32"])
    train(lm_config("tiny", ["train.steps=10"]), codes, tmp_path / "run", "image")
    sample_cli.main(["--pipeline", str(tmp_path / "run" / "final"), "--out", str(tmp_path / "run" / "samples"),
                     "--scale", "tiny", "--precision", "fp32"])
    metrics = novelty.main(["--record", str(tmp_path / "run" / "samples"), "--run", str(tmp_path / "run"),
                            "--scale", "tiny", "--cache", str(tmp_path / "judge"), "--out", str(tmp_path / "n.json")])
    assert metrics["training_rows"] == 2 * 4 * 12  # each training photo and its flip
    assert metrics["fresh_items"].startswith(f"the 'val' split of {photo_folder}")
    assert metrics["fresh_per_class"] * 4 >= 16  # the held-out split, all of it
    for row in metrics["novelty"]:
        assert row["n"] == 4 * 2 and 0 <= row["latent"]["nearer_than_fresh"] <= 1 and "codes" in row
    assert json.loads((tmp_path / "n.json").read_text())["metrics"]["novelty"][0]["guidance_scale"] == 1.0
