"""Data layer: folder datasets in their usual layouts, embedded defaults, sampling, bad input."""
import numpy as np
import pytest
import torch
from PIL import Image

from shared.data import (DataError, EmbeddedClips, EmbeddedPhotos, ImageFolder, SampleKey, StepSchedule,
                         VideoFolder, step_loader)
from shared.data.embedded import VAL_PHOTOS

from .conftest import photo


def test_imagenet_layout_labels_shapes_and_ranges(imagenet_dir):
    ds = ImageFolder(imagenet_dir, split="train", resolution=32)
    assert ds.classes == ["n01_cat", "n02_astronaut"]
    assert len(ds) == 11
    labels = [lab for _, lab in ds.samples]
    assert labels.count(0) == 6 and labels.count(1) == 5
    for i in range(len(ds)):
        item = ds[i]
        assert item["pixels"].shape == (3, 1, 32, 32)
        assert item["pixels"].dtype == torch.float32
        assert -1 <= item["pixels"].min() and item["pixels"].max() <= 1
        assert item["pixels"].std() > 0.05  # real content, not a blank frame
    grey = ds[[p.name for p, _ in ds.samples].index("img16.png")]["pixels"]
    assert torch.allclose(grey[0], grey[1]) and grey.std() > 0.05  # 16-bit grey became real RGB grey


def test_eval_crops_are_deterministic_training_crops_vary(imagenet_dir):
    ds = ImageFolder(imagenet_dir, split="val", resolution=(24, 40))
    assert torch.equal(ds[3]["pixels"], ds[3]["pixels"])
    assert ds[3]["pixels"].shape == (3, 1, 24, 40)
    a, b = ds[SampleKey(3, 1, 24, 24)], ds[SampleKey(3, 2, 24, 24)]
    assert torch.equal(ds[SampleKey(3, 1, 24, 24)]["pixels"], a["pixels"])
    assert not torch.equal(a["pixels"], b["pixels"])


def test_aspect_ratio_is_preserved_not_squashed(tmp_path):
    img = np.zeros((64, 128, 3), np.uint8)
    img[:, 48:80] = 255  # a vertical band a quarter of the width
    Image.fromarray(img).save(tmp_path / "band.png")
    x = ImageFolder(tmp_path, resolution=32)[0]["pixels"][0, 0]
    bright = (x.mean(0) > 0).float().mean().item()
    assert abs(bright - 0.5) < 0.07  # centre crop of the resized image; squashing would give 0.25


def test_plain_folder_and_bad_images(tmp_path):
    photo("chelsea", (40, 30)).save(tmp_path / "good.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ds = ImageFolder(tmp_path, resolution=16)
    assert ds.classes == [tmp_path.name] and len(ds) == 2
    good = [i for i, (p, _) in enumerate(ds.samples) if p.name == "good.jpg"][0]
    assert ds[good]["pixels"].shape == (3, 1, 16, 16)
    with pytest.raises(DataError, match=r"broken\.jpg: cannot decode image"):
        ds[1 - good]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no images found"):
        ImageFolder(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        ImageFolder(tmp_path / "nowhere")


def test_ucf101_layout_splits_labels_and_clips(ucf_dir):
    train = VideoFolder(ucf_dir, layout="ucf101", split="train", num_frames=9, frame_stride=2, resolution=32)
    test = VideoFolder(ucf_dir, layout="ucf101", split="test", num_frames=9, frame_stride=2, resolution=(32, 48))
    assert train.classes == ["ApplyEyeMakeup", "Biking"]
    assert [lab for _, lab in train.samples] == [0, 1] and [lab for _, lab in test.samples] == [0, 1]
    clip = test[1]["pixels"]
    assert clip.shape == (3, 9, 32, 48) and -1 <= clip.min() and clip.max() <= 1
    assert torch.equal(test[1]["pixels"], clip)  # centre clip is deterministic
    assert (clip[:, 1:] - clip[:, :-1]).abs().mean() > 0.005  # real motion between frames
    a = train[SampleKey(0, 5, 32, 32)]["pixels"]
    assert torch.equal(train[SampleKey(0, 5, 32, 32)]["pixels"], a)


def test_fps_rule_sets_the_stride(ucf_dir):
    ds = VideoFolder(ucf_dir, layout="ucf101", num_frames=5, fps=12.5, resolution=16)
    assert ds.stride_for(25.0) == 2 and ds.stride_for(50.0) == 4


def test_short_videos_loop_or_fail_clearly(ucf_dir, caplog):
    looped = VideoFolder(ucf_dir, layout="ucf101", num_frames=17, frame_stride=3, resolution=16)
    assert looped[0]["pixels"].shape == (3, 17, 16, 16)
    # looping is said in the log, once per file, and counted
    assert "v_ApplyEyeMakeup_g01_c01.avi: 30 frames, shorter than a clip (49); its frames are looped" in caplog.text
    looped[0]
    assert caplog.text.count("are looped") == 1 and len(looped.looped) == 1
    strict = VideoFolder(ucf_dir, layout="ucf101", num_frames=17, frame_stride=3, resolution=16,
                         short_policy="error")
    with pytest.raises(DataError, match=r"v_ApplyEyeMakeup_g01_c01\.avi: video has 30 frames, a clip needs 49"):
        strict[0]


def test_ucf101_missing_split_file_and_broken_video(ucf_dir, tmp_path):
    with pytest.raises(DataError, match=r"testlist03\.txt: split file not found"):
        VideoFolder(ucf_dir, layout="ucf101", split="test", fold=3)
    bad = tmp_path / "videos"
    bad.mkdir()
    (bad / "clip.avi").write_bytes(b"RIFF....AVI garbage")
    ds = VideoFolder(bad, layout="plain", num_frames=5, resolution=16)
    with pytest.raises(DataError, match=r"clip\.avi: cannot open video"):
        ds[0]


def test_embedded_photos_splits_are_disjoint_and_fixed():
    train, val = EmbeddedPhotos("train", 32), EmbeddedPhotos("val", (24, 40))
    assert set(train.names).isdisjoint(val.names) and set(val.names) == set(VAL_PHOTOS)
    assert len(val) == len(VAL_PHOTOS) * len(EmbeddedPhotos.VAL_CROPS)
    v = val[4]
    assert v["pixels"].shape == (3, 1, 24, 40) and torch.equal(val[4]["pixels"], v["pixels"])
    assert EmbeddedPhotos.classes[int(v["label"])] in VAL_PHOTOS
    t = train[SampleKey(0, 11, 32, 32)]
    assert EmbeddedPhotos.classes[int(t["label"])] not in VAL_PHOTOS
    assert t["pixels"].std() > 0.05


def test_embedded_clips_real_and_motion():
    train, val = EmbeddedClips("train", 32, num_frames=9), EmbeddedClips("val", 32, num_frames=9)
    kinds = {train[SampleKey(0, s, 32, 32)]["path"] for s in range(12)}
    assert any(k.split(":")[1] in ("bikes", "bigbuckbunny", "carphone") for k in kinds)
    assert any(k.split(":")[1].startswith(("pan", "zoom", "rotate")) for k in kinds)
    for i in range(len(val)):
        clip = val[i]["pixels"]
        assert clip.shape == (3, 9, 32, 32)
        assert (clip[:, -1] - clip[:, 0]).abs().mean() > 0.01  # the camera or the scene moves
    assert torch.equal(val[7]["pixels"], val[7]["pixels"])


def test_schedule_is_a_function_of_the_step_and_shards_ranks():
    kw = dict(lengths={"image": 50, "video": 30}, batch_sizes={"image": 4, "video": 2}, pattern="iiv",
              resolutions=[16, 24, (16, 32)], seed=3, world_size=2)
    r0, r0b, r1 = StepSchedule(rank=0, **kw), StepSchedule(rank=0, **kw), StepSchedule(rank=1, **kw)
    assert [r0.kind(s) for s in range(6)] == ["image", "image", "video"] * 2
    assert all(r0.keys(s) == r0b.keys(s) for s in range(20))
    image_steps = [s for s in range(9) if r0.kind(s) == "image"]  # 6 image steps x 2 ranks x 4 = 48 <= 50
    seen = [k.index for s in image_steps for k in r0.keys(s) + r1.keys(s)]
    assert len(set(seen)) == len(seen)  # ranks read disjoint items within an epoch
    assert {r0.resolution(s) for s in range(40)} == {(16, 16), (24, 24), (16, 32)}
    assert all(r0.resolution(s) == r1.resolution(s) for s in range(10))
    with pytest.raises(ValueError, match="no video dataset"):
        StepSchedule(lengths={"image": 5}, batch_sizes={"image": 1}, pattern="iv")


def test_step_loader_resumes_with_identical_batches():
    sched = StepSchedule(lengths={"image": 100, "video": 100}, batch_sizes={"image": 2, "video": 1},
                         pattern="iv", resolutions=[16, 24], seed=1)
    datasets = {"image": EmbeddedPhotos("train", 16), "video": EmbeddedClips("train", 16, num_frames=5)}
    full = list(step_loader(datasets, sched, 0, 4))
    resumed = list(step_loader(datasets, sched, 2, 4))
    assert full[1]["pixels"].shape[2] == 5 and full[0]["pixels"].shape[2] == 1
    for a, b in zip(full[2:], resumed):
        assert torch.equal(a["pixels"], b["pixels"])


def test_unreadable_training_items_are_replaced_and_named(tmp_path):
    from shared.data.collate import collate
    from shared.data.sampling import KindRouter

    for name in ("a", "c"):
        photo("chelsea", (40, 30)).save(tmp_path / f"{name}.jpg")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ds = ImageFolder(tmp_path, resolution=16)
    router = KindRouter({"image": ds})
    key = SampleKey(1, 7, 16, 16, "image")  # b.jpg
    item = router[key]
    assert item["path"].endswith("c.jpg") and len(item["unreadable"]) == 1 and "b.jpg: cannot decode" in item["unreadable"][0]
    assert torch.equal(item["pixels"], router[key]["pixels"])  # the same replacement every time (exact resume)
    batch = collate([router[SampleKey(i, 7, 16, 16, "image")] for i in range(3)])
    assert batch["unreadable"] == item["unreadable"]
    (tmp_path / "c.jpg").write_bytes(b"broken too")
    with pytest.raises(DataError, match=r"b\.jpg: cannot decode image.*next 1 items of the image dataset"):
        KindRouter({"image": ds}, max_replacements=1)[key]


def test_hostile_images_cost_little_and_fail_clearly(tmp_path):
    """extreme aspect ratios are cut before resizing, a decompression bomb is a
    DataError naming the file, and a 16-bit image is scaled by its bit depth."""
    import resource

    from shared.data.transforms import load_image_rgb

    Image.new("RGB", (1, 5000), (200, 10, 10)).save(tmp_path / "thin.png")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    item = ImageFolder(tmp_path, resolution=256)[0]
    assert item["pixels"].shape == (3, 1, 256, 256)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200_000  # KB: far below the 3.9 GB of old
    bomb = tmp_path / "bomb" / "bomb.png"
    bomb.parent.mkdir()
    Image.new("1", (14000, 14000)).save(bomb)
    with pytest.raises(DataError, match=r"bomb.png: image too large to decode safely"):
        load_image_rgb(bomb)
    ramp = (np.arange(64 * 64, dtype=np.float64).reshape(64, 64) / (64 * 64) * 14 * 257).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "dark16.png")  # a dark 16-bit ramp: mean 7 of 255
    assert abs(load_image_rgb(tmp_path / "dark16.png").float().mean().item() - 7.0) < 0.6


def test_layout_mistakes_get_a_hint(tmp_path, ucf_dir, caplog):
    """a plain folder read as UCF-101 points to --video-layout; a plain image folder that
    validates on its own training files says so."""
    import shutil

    from tokenizer.train import build_datasets
    from tokenizer.train_config import StageConfig, TokenizerDataConfig

    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(next(ucf_dir.rglob("*.avi")), plain / "a.avi")
    with pytest.raises(DataError, match=r"classInd.txt: UCF-101 split file not found; .*--video-layout"):
        VideoFolder(plain, layout="ucf101")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        photo("chelsea", (40, 30)).save(images / f"{i}.png")
    build_datasets(TokenizerDataConfig(images=str(images), videos=""), StageConfig(name="s", pattern="i"), 32)
    assert "the image validation split is the training files themselves" in caplog.text


def test_a_mirrored_camera_motion_clip_carries_the_mirrored_label():
    """A flipped pan-left clip is a pan-right clip (found by the class-consistency classifier): every clip labelled
    pan_left moves the picture one way, every pan_right the other."""
    clips = EmbeddedClips("train", 48, num_frames=5)

    def shift(pixels):  # the horizontal shift between consecutive frames that matches them best, in pixels
        total = torch.zeros(9)
        for t in range(pixels.shape[1] - 1):
            a, b = pixels[:, t].mean(0), pixels[:, t + 1].mean(0)
            a, b = a - a.mean(), b - b.mean()
            total += torch.tensor([(a[:, 8:-8] * torch.roll(b, -d, dims=1)[:, 8:-8]).sum().item() for d in range(-4, 5)])
        return int(total.argmax()) - 4

    signs = {"pan_left": set(), "pan_right": set()}
    for i in range(160):
        item = clips[SampleKey(i, 5000 + i, 48, 48, "video")]
        name = clips.classes[int(item["label"])]
        if name in signs:
            signs[name].add(shift(item["pixels"]) > 0)
    assert signs == {"pan_left": {True}, "pan_right": {False}}, signs


def test_embedded_data_sets_end_where_their_length_says():
    from shared.data import EmbeddedClips, EmbeddedPhotos

    for data in (EmbeddedPhotos("val", 16), EmbeddedClips("val", 16, 5)):
        assert sum(1 for _ in data) == len(data)  # iteration stops: items no longer wrap around without end
        with pytest.raises(IndexError, match=f"index {len(data)} out of range"):
            data[len(data)]
