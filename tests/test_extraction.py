"""shared/extraction.py: shards + manifest, resume from the first missing shard, refusal of changed settings."""
import json

import numpy as np
import pytest
import torch

from shared.data import DataError
from shared.extraction import ExtractionError, ShardDataset, extract, read_manifest
from shared.provenance import file_sha256


class Items(torch.utils.data.Dataset):
    """Item i: pixels filled with i, label i % 3; the items in `broken` raise DataError."""

    def __init__(self, n, broken=()):
        self.n, self.broken = n, set(broken)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i in self.broken:
            raise DataError(f"/data/item{i}.png", "cannot decode image")
        return {"pixels": torch.full((3, 1, 2, 2), float(i)), "label": torch.tensor(i % 3), "path": f"item{i}"}


def flip_encode(calls):
    """Two rows per item (as is, negated), uint16 codes and float16 'latents'; counts the items it sees."""
    def encode(batch):
        x = batch["pixels"]
        calls.extend(int(v) for v in x[:, 0, 0, 0, 0])
        codes = torch.cat([x[:, 0, 0, 0, 0], 100 - x[:, 0, 0, 0, 0]]).to(torch.int32).to(torch.uint16)
        return {"codes": codes, "mean": torch.cat([x, -x]).half(), "labels": batch["label"].repeat(2)}
    return encode


SETTINGS = {"tokenizer": "/runs/tok", "tokenizer_sha256": "abc", "resolution": 2, "frames": 1}


def test_shards_rows_labels_and_unreadable_items(tmp_path):
    calls = []
    manifest = extract(Items(10, broken={3}), flip_encode(calls), tmp_path, SETTINGS, shard_size=4, batch_size=3)
    assert manifest["complete"] and len(manifest["shards"]) == 3 and manifest["rows"] == 18
    assert [u["item"] for u in manifest["unreadable"]] == [3]
    assert "/data/item3.png" in manifest["unreadable"][0]["path"] and "decode" in manifest["unreadable"][0]["problem"]
    data = ShardDataset(tmp_path)
    assert data.arrays["codes"].dtype == torch.uint16 and data.arrays["mean"].dtype == torch.float16
    assert len(data) == 18 and data.settings == SETTINGS
    # shard 0 holds items 0, 1, 2 then their negated copies; item 3 is missing
    assert data.arrays["codes"][:6].long().tolist() == [0, 1, 2, 100, 99, 98]
    assert data[4]["labels"].item() == 1 and data[4]["mean"][0, 0, 0, 0].item() == -1.0


def test_killed_extraction_resumes_at_the_first_missing_shard_and_equals_a_straight_run(tmp_path):
    straight = tmp_path / "straight"
    extract(Items(10), flip_encode([]), straight, SETTINGS, shard_size=4, batch_size=2)

    calls = []
    encode = flip_encode(calls)

    def dies_in_shard_2(batch):
        if int(batch["pixels"][0, 0, 0, 0, 0]) >= 8:
            raise KeyboardInterrupt
        return encode(batch)

    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        extract(Items(10), dies_in_shard_2, killed, SETTINGS, shard_size=4, batch_size=2)
    with pytest.raises(ExtractionError, match="did not finish"):
        read_manifest(killed)
    before = json.loads((killed / "manifest.json").read_text())["extract_seconds"]
    calls.clear()
    resumed = extract(Items(10), encode, killed, SETTINGS, shard_size=4, batch_size=2)
    assert calls == [8, 9]  # only the missing shard was encoded
    assert 0 < before < resumed["extract_seconds"]  # the time of both calls
    a, b = ShardDataset(straight), ShardDataset(killed)
    for name in a.arrays:
        assert torch.equal(a.arrays[name].load(), b.arrays[name].load())


def test_shards_are_memory_mapped_and_index_like_one_tensor(tmp_path):
    """Rows come from the memory-mapped shards (nothing is read up front) and index like one concatenated tensor."""
    extract(Items(10, broken={3}), flip_encode([]), tmp_path, SETTINGS, shard_size=4, batch_size=3)
    data = ShardDataset(tmp_path)
    codes = data.arrays["codes"]
    whole = codes.load()
    assert [len(p) for p in codes.parts] == [6, 8, 4] and codes.shape == whole.shape == (18,)
    for index in (0, 5, 6, 17, -1, slice(4, 12), slice(None, None, 5), [17, 0, 6, 6], torch.tensor([13, 2])):
        assert torch.equal(codes[index], whole[index]), index
    longs = codes.to(torch.long)
    assert longs[[1, 7]].dtype == torch.long and torch.equal(longs[[1, 7]], whole[[1, 7]].to(torch.int32).long())
    means = data.arrays["mean"]
    row = means[2]
    row += 1  # a copy: the mapped shard is untouched
    assert torch.equal(means[2], means.load()[2])
    with pytest.raises(IndexError, match="18 rows"):
        codes[18]
    with pytest.raises(IndexError, match="18 rows"):
        codes[[0, 18]]
    mask = whole.long() % 2 == 0
    assert torch.equal(codes[mask], whole[mask]) and torch.equal(codes[np.int64(7)], whole[7])
    with pytest.raises(IndexError, match="1-D"):
        codes[[[0, 1]]]
    # no file stays open per shard, and a pickled array (a DataLoader worker's copy) maps the files again
    import os
    import pickle
    open_files = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    again = [ShardDataset(tmp_path) for _ in range(20)]
    assert open_files is None or len(os.listdir("/proc/self/fd")) == open_files
    copy = pickle.loads(pickle.dumps(again[0].arrays["codes"].to(torch.long)))
    assert len(pickle.dumps(codes)) < 1000 and torch.equal(copy[[3, 9]], whole[[3, 9]].to(torch.int32).long())
    shard = tmp_path / "shard_00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:-8])  # truncated on disk
    with pytest.raises(ExtractionError, match="shard_00001.safetensors: not a readable safetensors shard"):
        ShardDataset(tmp_path)


def test_changed_tokenizer_or_setting_is_refused_never_mixed(tmp_path):
    extract(Items(6), flip_encode([]), tmp_path, SETTINGS, shard_size=4)
    with pytest.raises(ExtractionError, match=r"tokenizer_sha256: 'abc' -> 'def'.*--restart"):
        extract(Items(6), flip_encode([]), tmp_path, {**SETTINGS, "tokenizer_sha256": "def"}, shard_size=4)
    with pytest.raises(ExtractionError, match="shard_size"):
        extract(Items(6), flip_encode([]), tmp_path, SETTINGS, shard_size=2)
    assert json.loads((tmp_path / "manifest.json").read_text())["settings"]["tokenizer_sha256"] == "abc"
    (tmp_path / "notes.txt").write_text("kept")
    extract(Items(6), flip_encode([]), tmp_path, {**SETTINGS, "tokenizer_sha256": "def"}, shard_size=2, restart=True)
    assert ShardDataset(tmp_path).settings["tokenizer_sha256"] == "def"
    assert len(list(tmp_path.glob("shard_*"))) == 3 and (tmp_path / "notes.txt").is_file()


def test_a_folder_written_before_a_setting_existed_is_refused_with_how_to_extract_again(tmp_path):
    extract(Items(8), flip_encode([]), tmp_path, SETTINGS, shard_size=4)  # written before "precision" existed
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["shards"], manifest["complete"] = manifest["shards"][:1], False
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExtractionError, match=r"manifest.json: written by an earlier version of the project \(its "
                                              r"settings have no precision\).*pass --restart"):
        extract(Items(8), flip_encode([]), tmp_path, {**SETTINGS, "precision": "fp32"}, shard_size=4)
    calls = []
    extract(Items(8), flip_encode(calls), tmp_path, {**SETTINGS, "precision": "fp32"}, shard_size=4, restart=True)
    assert calls == list(range(8)) and ShardDataset(tmp_path).settings == {**SETTINGS, "precision": "fp32"}
    with pytest.raises(ExtractionError, match=r"precision: 'fp32' -> 'bf16'.*--precision fp32"):
        extract(Items(8), flip_encode([]), tmp_path, {**SETTINGS, "precision": "bf16"}, shard_size=4)


def test_missing_shard_file_is_rewritten_and_a_missing_folder_is_a_clear_error(tmp_path):
    extract(Items(8), flip_encode([]), tmp_path, SETTINGS, shard_size=4)
    (tmp_path / "shard_00001.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="shard_00001.safetensors"):
        ShardDataset(tmp_path)
    calls = []
    extract(Items(8), flip_encode(calls), tmp_path, SETTINGS, shard_size=4)
    assert calls == [4, 5, 6, 7] and len(ShardDataset(tmp_path)) == 16
    with pytest.raises(FileNotFoundError, match="not an extraction folder"):
        ShardDataset(tmp_path / "nothing")


def test_file_sha256_of_a_folder_changes_with_its_bytes(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"1234")
    before = file_sha256(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"1235")
    assert file_sha256(tmp_path) != before and len(before) == 64


def test_a_shard_of_unreadable_items_only_is_recorded_and_resume_keeps_it(tmp_path):
    extract(Items(10, broken={4, 5, 6, 7}), flip_encode([]), tmp_path, SETTINGS, shard_size=4)
    calls = []
    manifest = extract(Items(10, broken={4, 5, 6, 7}), flip_encode(calls), tmp_path, SETTINGS, shard_size=4)
    assert calls == [] and manifest["shards"][1] == {"index": 1, "file": None, "rows": 0, "items": 0}
    assert len(manifest["unreadable"]) == 4 and len(ShardDataset(tmp_path)) == 12
    with pytest.raises(ExtractionError, match="no item could be read"):
        extract(Items(3, broken={0, 1, 2}), flip_encode([]), tmp_path / "bad", SETTINGS, shard_size=4)


def test_flipped_rows_of_mirrored_classes_get_the_mirrored_label():
    """A flipped pan-left clip is stored as pan right (and a cw rotation as ccw); photos keep their label."""
    from shared.data import EmbeddedClips, EmbeddedPhotos
    from shared.extraction import SeededItems, flipped_labels, mirrored_labels

    clips = SeededItems(EmbeddedClips("train", 16, num_frames=5), seed=3, length=4)
    mirror = mirrored_labels(clips)
    names = EmbeddedClips.classes
    labels = torch.tensor([names.index(n) for n in ("pan_left", "rotate_cw", "zoom_in", "bikes")])
    assert [names[i] for i in flipped_labels(labels, mirror)] == ["pan_right", "rotate_ccw", "zoom_in", "bikes"]
    assert mirrored_labels(EmbeddedPhotos("train", 16)) is None
    assert torch.equal(flipped_labels(labels, None), labels)


def test_a_run_killed_after_its_first_shard_before_any_manifest_update_resumes(tmp_path, monkeypatch):
    from shared import extraction

    real = extraction.atomic_write_json
    writes = []

    def killed_after_first_shard(path, obj):
        writes.append(path)
        if any((tmp_path / "out").glob("shard_*.safetensors")):
            raise KeyboardInterrupt  # the kill, after shard 0 and before the manifest says so
        return real(path, obj)

    monkeypatch.setattr(extraction, "atomic_write_json", killed_after_first_shard)
    with pytest.raises(KeyboardInterrupt):
        extract(Items(8), flip_encode([]), tmp_path / "out", SETTINGS, shard_size=4, batch_size=4)
    (tmp_path / "out" / ".shard_00001.safetensors.x1.tmp").write_bytes(b"half")  # what a killed write leaves
    monkeypatch.setattr(extraction, "atomic_write_json", real)
    calls = []
    manifest = extract(Items(8), flip_encode(calls), tmp_path / "out", SETTINGS, shard_size=4, batch_size=4)
    assert manifest["complete"] and manifest["rows"] == 16 and sorted(calls) == list(range(8))
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_a_full_disk_names_the_shard_and_a_rerun_resumes(tmp_path, monkeypatch):
    """A full disk had surfaced as a bare OSError [Errno 28] naming no file."""
    import errno

    from shared import extraction

    real, written = extraction.save_file, []

    def full(tensors, path, *args, **kwargs):  # the disk fills up during the second shard
        written.append(path)
        if len(written) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, *args, **kwargs)

    monkeypatch.setattr(extraction, "save_file", full)
    with pytest.raises(OSError, match=r"out/shard_00001.safetensors: no space left on the device .* run the command "
                                      r"again: what was finished is kept") as caught:
        extract(Items(8), flip_encode([]), tmp_path / "out", SETTINGS, shard_size=4, batch_size=4)
    assert caught.value.errno == errno.ENOSPC
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "shard_00000.safetensors"]
    monkeypatch.setattr(extraction, "save_file", real)
    calls = []
    assert extract(Items(8), flip_encode(calls), tmp_path / "out", SETTINGS, shard_size=4, batch_size=4)["complete"]
    assert calls == [4, 5, 6, 7]


def test_safetensors_own_leftover_is_cleaned_on_the_next_start(tmp_path):
    """safetensors writes `.tmpXXXXXX` and renames it: a kill mid-write had left it for good."""
    extract(Items(4), flip_encode([]), tmp_path, SETTINGS, shard_size=4, batch_size=4)
    (tmp_path / ".tmpeBrdXk").write_bytes(b"half a shard")
    (tmp_path / "notes.tmp.txt").write_text("not ours")
    extract(Items(4), flip_encode([]), tmp_path, SETTINGS, shard_size=4, batch_size=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "notes.tmp.txt", "shard_00000.safetensors"]


def test_an_out_that_is_a_file_and_a_label_outside_the_classes_are_named(tmp_path):
    (tmp_path / "codes").write_text("")
    with pytest.raises(NotADirectoryError, match=r"codes: is a file where a folder is needed; choose another --out"):
        extract(Items(4), flip_encode([]), tmp_path / "codes", SETTINGS, shard_size=4, batch_size=4)
    named = {**SETTINGS, "class_names": ["a", "b", "c"]}  # Items' labels are i % 3
    extract(Items(8), flip_encode([]), tmp_path / "out", named, shard_size=4, batch_size=4)
    assert len(ShardDataset(tmp_path / "out")) == 16
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    manifest["settings"]["class_names"] = ["a", "b"]  # label 2 is now outside the classes it names
    (tmp_path / "out" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExtractionError, match=r"out/shard_00000.safetensors: holds label 2, outside the 2 classes its "
                                              r"manifest.json names"):
        ShardDataset(tmp_path / "out")


def test_a_manifest_without_the_shards_sha256_is_an_earlier_versions_and_refused(tmp_path):
    extract(Items(6), flip_encode([]), tmp_path, SETTINGS, shard_size=4)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    ShardDataset(tmp_path)  # as written: read
    for shard in manifest["shards"]:
        shard.pop("sha256")
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExtractionError, match=r"manifest.json: written by an earlier version .*no sha256 of "
                                              r"shard_00000.safetensors.*extract again with --restart"):
        ShardDataset(tmp_path)
