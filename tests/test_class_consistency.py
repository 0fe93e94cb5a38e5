"""Class consistency of generated samples: real-data classifier, its cache, the score, the reference points, bad folders."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from eval.class_consistency import check_classes, list_samples, load_sample, main, score_folder
from eval.classifier import PRESETS, RealData, load_or_train
from shared.data import DataError, EmbeddedPhotos
from shared.data.embedded import VAL_PHOTOS

from .conftest import photo

TINY = dataclasses.replace(PRESETS["tiny"]["image"], steps=25, held_out=64)
CLASSES = ("chelsea", "hubble_deep_field")  # a cat, a galaxy: two easy real classes


@pytest.fixture(scope="module")
def two_photos(tmp_path_factory):
    """ImageNet layout: train/val crops of two real photos (different crops in each split)."""
    root = tmp_path_factory.mktemp("two_photos")
    for label, name in enumerate(CLASSES):
        src = photo(name, (120, 90))
        for split, boxes in (("train", [(0, 0, 80, 70), (40, 20, 120, 90), (10, 10, 110, 80)]),
                             ("val", [(20, 0, 100, 60), (0, 30, 70, 90), (50, 5, 115, 85), (30, 30, 90, 90)])):
            d = root / split / f"c{label}_{name}"
            d.mkdir(parents=True)
            for i, box in enumerate(boxes):
                src.crop(box).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def trained(two_photos, tmp_path_factory):
    cache = tmp_path_factory.mktemp("classifiers")
    data = RealData("image", str(two_photos), resolution=32)
    net, record = load_or_train(data, TINY, cache, progress=False)
    return data, net, record, cache


def write_samples(folder, images_by_class):
    for c, images in images_by_class.items():
        d = folder / f"{c:04d}"
        d.mkdir(parents=True)
        for i, img in enumerate(images):
            img.save(d / f"{i:05d}.png")
    return folder


def test_classifier_trained_a_few_steps_separates_two_real_classes(trained):
    data, _, record, _ = trained
    assert record["trained_now"] and record["known_classes"] == [0, 1] and record["chance"] == 0.5
    assert record["held_out"]["n"] == 8 and "'val' split" in record["held_out"]["items"]
    assert record["held_out_accuracy"] >= 0.75  # 8 held-out crops, chance 0.5


def test_correct_labels_score_higher_than_shuffled(trained, tmp_path):
    data, net, record, _ = trained
    crops = {c: [photo(name, (120, 90)).crop((x, y, x + 60, y + 60)) for x, y in ((0, 0), (60, 30), (30, 15))]
             for c, name in enumerate(CLASSES)}
    right = write_samples(tmp_path / "right", crops)
    swapped = write_samples(tmp_path / "swapped", {0: crops[1], 1: crops[0]})
    args = ("image", 32, 1, record["known_classes"], record["classes"], data.describe())
    good, bad = score_folder(net, right, *args), score_folder(net, swapped, *args)
    assert good["n"] == bad["n"] == 6 and [r["n"] for r in good["per_class"]] == [3, 3]
    assert good["share"] > 0.5 > bad["share"]
    assert good["share"] + bad["share"] == pytest.approx(1.0)  # two classes: every sample counts in one of them
    assert good["mean_probability"] > bad["mean_probability"]


def test_cached_classifier_is_reused_and_a_changed_setting_retrains(trained, tmp_path):
    data, net, record, cache = trained
    again, rec2 = load_or_train(data, TINY, cache, progress=False)
    assert not rec2["trained_now"] and rec2["weights"] == record["weights"]
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    # the same settings elsewhere train the same network (seeded)
    _, fresh = load_or_train(data, TINY, tmp_path, progress=False)
    assert fresh["trained_now"] and fresh["weights_sha256"] == record["weights_sha256"]
    # another resolution, another step count: another folder, trained again
    _, other = load_or_train(dataclasses.replace(data, resolution=24), TINY, cache, progress=False)
    assert other["trained_now"] and other["weights"] != record["weights"] and "24px" in other["weights"]
    _, longer = load_or_train(data, dataclasses.replace(TINY, steps=TINY.steps + 1), cache, progress=False)
    assert longer["trained_now"] and longer["weights"] != record["weights"]
    # damaged weights no longer match their record: trained again, not trusted
    with open(fresh["weights"], "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\0")
    _, repaired = load_or_train(data, TINY, tmp_path, progress=False)
    assert repaired["trained_now"] and repaired["weights_sha256"] == record["weights_sha256"]


def test_bad_samples_folders_give_an_error_naming_the_folder(tmp_path):
    img = photo("chelsea", (32, 32))
    with pytest.raises(DataError, match="does not exist") as e:
        list_samples(tmp_path / "missing", "image")
    assert "missing" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders") as e:
        list_samples(tmp_path / "empty", "image")
    assert str(tmp_path / "empty") in str(e.value)
    write_samples(tmp_path / "named", {0: [img]})
    (tmp_path / "named" / "cat").mkdir()
    with pytest.raises(DataError, match="not an integer") as e:
        list_samples(tmp_path / "named", "image")
    assert str(tmp_path / "named" / "cat") in str(e.value)
    (tmp_path / "hollow" / "0001").mkdir(parents=True)
    with pytest.raises(DataError, match="no image samples") as e:
        list_samples(tmp_path / "hollow", "image")
    assert str(tmp_path / "hollow" / "0001") in str(e.value)
    samples = list_samples(write_samples(tmp_path / "unknown", {0: [img], 7: [img]}), "image")
    with pytest.raises(DataError, match="class 7 is not a class") as e:
        check_classes(samples, tmp_path / "unknown", [0, 1], "two photos")
    assert str(tmp_path / "unknown" / "0007") in str(e.value)


def test_embedded_photo_classes_are_the_training_photos_only():
    data = RealData("image", "embedded", resolution=16)
    known = data.known_classes()
    assert len(known) == len(EmbeddedPhotos.classes) - len(VAL_PHOTOS)
    assert not {EmbeddedPhotos.classes[c] for c in known} & set(VAL_PHOTOS)
    coffee = EmbeddedPhotos.classes.index("coffee")  # a validation photo: a generator never learnt it
    with pytest.raises(DataError, match=f"{coffee:04d}"):
        check_classes([(None, coffee)], "samples", known, data.describe())


def test_video_samples_read_as_gif_and_mp4(tmp_path):
    import av

    frames = np.stack([np.asarray(photo("chelsea", (40, 32)).rotate(3 * k)) for k in range(5)])  # (5, 32, 40, 3)
    gif = tmp_path / "00000.gif"
    Image.fromarray(frames[0]).save(gif, save_all=True, append_images=[Image.fromarray(f) for f in frames[1:]])
    mp4 = tmp_path / "00001.mp4"
    with av.open(str(mp4), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.height, stream.width, stream.pix_fmt = 32, 40, "yuv420p"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    for path in (gif, mp4):
        x = load_sample(path, 32, 5)
        assert x.shape == (3, 5, 32, 32) and -1 <= x.min() < x.max() <= 1
        assert (x[:, 1] - x[:, 0]).abs().mean() > 0.01  # the frames differ: all of them were read
    with pytest.raises(DataError, match="has 5 frames, the classifier takes 17") as e:
        load_sample(gif, 32, 17)
    assert str(gif) in str(e.value)


def test_video_classifier_trains_on_embedded_clips(tmp_path):
    data = RealData("video", "embedded", resolution=16, frames=5)
    cfg = dataclasses.replace(PRESETS["tiny"]["video"], steps=4, held_out=16)
    net, record = load_or_train(data, cfg, tmp_path, progress=False)
    assert len(record["classes"]) == 11 and record["chance"] == pytest.approx(1 / 11)
    assert record["held_out"]["n"] == 16 and "validation clips" in record["held_out"]["items"]
    assert net(torch.zeros(2, 3, 5, 16, 16)).shape == (2, 11)


def test_command_line_writes_the_share_at_each_guidance_scale(two_photos, trained, tmp_path):
    _, _, record, cache = trained
    crops = {c: [photo(name, (32, 32))] * 2 for c, name in enumerate(CLASSES)}
    low = write_samples(tmp_path / "g1", {0: crops[1], 1: crops[0]})  # "weak conditioning": the wrong class
    high = write_samples(tmp_path / "g4", crops)
    out = tmp_path / "consistency.json"
    common = ["--kind", "image", "--scale", "tiny", "--images", str(two_photos), "--cache", str(cache),
              "--steps", str(TINY.steps)]
    main(common + ["--samples", str(low), "--guidance", "1", "--samples", str(high), "--guidance", "4",
                   "--out", str(out)])
    result = json.loads(out.read_text())
    rows = result["metrics"]["class_consistency"]
    assert [r["guidance_scale"] for r in rows] == [1.0, 4.0] and [r["n"] for r in rows] == [4, 4]
    assert rows[0]["share"] < rows[1]["share"] and result["metrics"]["rises_with_guidance"] is True
    assert result["metrics"]["chance"] == 0.5
    assert result["metrics"]["classifier_accuracy"] == record["held_out_accuracy"]
    assert result["classifier_sha256"] == record["weights_sha256"] and not result["classifier_trained_now"]
    assert result["resolution"] == 32 and result["frames"] == 1  # taken from the samples
    # the scale beside the shares: reference points on as many real items per class as the samples have
    refs = result["metrics"]["references"]
    assert result["metrics"]["references_per_class"] == 2
    assert set(refs) == {"flat_colour", "class_average", "real"} and all(r["n"] == 4 for r in refs.values())
    assert refs["real"]["share"] >= refs["flat_colour"]["share"]
    for row in rows + list(refs.values()):
        assert row["feature_distance"]["frechet"] >= 0 and 0 <= row["feature_distance"]["precision"] <= 1
    # the same pictures under swapped labels: the distribution figure does not read labels
    assert rows[0]["feature_distance"]["frechet"] == pytest.approx(rows[1]["feature_distance"]["frechet"])
    with pytest.raises(SystemExit):
        main(common + ["--samples", str(low), "--samples", str(high), "--guidance", "1", "--out", str(out)])
    with pytest.raises(SystemExit, match="not an integer"):
        (tmp_path / "g1" / "extra").mkdir()
        main(common + ["--samples", str(low), "--out", str(out)])


def test_a_record_is_read_where_it_is_checked_and_each_row_names_its_samples(two_photos, trained, tmp_path, capsys):
    """--record had read the folders samples.json named, wherever the record now is."""
    import shutil

    from shared.sample_folders import write_sample_folders

    _, _, _, cache = trained
    pixels = {c: torch.from_numpy(np.array(photo(name, (32, 32)))).permute(2, 0, 1)[:, None] / 127.5 - 1
              for c, name in enumerate(CLASSES)}
    jobs = [(c, i) for c in (0, 1) for i in range(2)]
    record = write_sample_folders(tmp_path / "s", {"seed": 0, "batch_size": 4}, jobs, [1.0, 3.0],
                                  lambda positions, seed, scale: torch.stack([pixels[jobs[p][0]] for p in positions]),
                                  video=False)
    shutil.copytree(tmp_path / "s", tmp_path / "copy")
    common = ["--kind", "image", "--scale", "tiny", "--images", str(two_photos), "--cache", str(cache),
              "--steps", str(TINY.steps), "--references", "0", "--out", str(tmp_path / "c.json")]
    main(common + ["--record", str(tmp_path / "copy")])
    rows = json.loads((tmp_path / "c.json").read_text())["metrics"]["class_consistency"]
    assert [r["samples"] for r in rows] == [str(tmp_path / "copy" / "cfg1"), str(tmp_path / "copy" / "cfg3")]
    assert [r["samples_sha256"] for r in rows] == [record["folders"][k]["sha256"] for k in ("cfg1", "cfg3")]
    (tmp_path / "copy" / "cfg3" / "0001" / "00000.png").unlink()
    with pytest.raises(SystemExit):
        main(common + ["--record", str(tmp_path / "copy")])
    assert "copy/cfg3/0001/00000.png: missing (1 of the 4 samples" in capsys.readouterr().err
