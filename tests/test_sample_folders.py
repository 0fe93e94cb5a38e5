"""shared.sample_folders: the folders, grids and record every generator's sampler writes."""
import json

import pytest
import torch

from shared.sample_folders import write_sample_folders


def fake_draw(calls):
    def draw(positions, seed, scale):
        calls.append((tuple(positions), seed, scale))
        g = torch.Generator().manual_seed(seed)
        return torch.rand(len(positions), 3, 1, 8, 8, generator=g) * 2 - 1
    return draw


def test_one_folder_and_grid_per_scale_resumable_and_never_mixed(tmp_path):
    jobs = [(c, i) for c in (3, 7) for i in range(3)]
    settings = {"generator": "test", "seed": 2, "batch_size": 4, "classes": [3, 7]}
    calls = []
    record = write_sample_folders(tmp_path, settings, jobs, [1.0, 1.5], fake_draw(calls), video=False,
                                  context={"threads": 1})
    for name in ("cfg1", "cfg1.5"):  # a fractional scale keeps its whole name, folder and grid
        assert sorted(p.relative_to(tmp_path / name).as_posix() for p in (tmp_path / name).rglob("*.png")) == \
            [f"{c:04d}/{i:05d}.png" for c, i in jobs]
        assert (tmp_path / f"{name}.png").is_file()
    assert [c[1] for c in calls] == [200006, 200007] * 2  # batch b of every folder: seed * 100_003 + b
    saved = json.loads((tmp_path / "samples.json").read_text())
    assert saved["folders"]["cfg1.5"]["n"] == 6 and saved["threads"] == 1 and saved == json.loads(json.dumps(record))
    # killed: a missing file is drawn again from its batch's seed alone, the same pixels
    victim = tmp_path / "cfg1.5" / "0007" / "00002.png"
    before = victim.read_bytes()
    victim.unlink()
    calls.clear()
    write_sample_folders(tmp_path, settings, jobs, [1.0, 1.5], fake_draw(calls), video=False)
    assert calls == [((4, 5), 200007, 1.5)] and victim.read_bytes() == before
    with pytest.raises(ValueError, match="other settings .*seed"):
        write_sample_folders(tmp_path, {**settings, "seed": 3}, jobs, [1.0], fake_draw([]), video=False)


def test_evaluation_reads_the_folder_given_and_refuses_missing_changed_or_extra_files(tmp_path):
    """Evaluation had read the paths samples.json named (a copy with files removed was scored on the original's) and
    skipped files deleted in place."""
    import shutil

    from shared.sample_folders import checked_folder

    jobs = [(c, i) for c in (3, 7) for i in range(3)]
    settings = {"generator": "test", "seed": 2, "batch_size": 4}
    record = write_sample_folders(tmp_path / "s", settings, jobs, [1.0], fake_draw([]), video=False)
    entry = record["folders"]["cfg1"]
    assert sorted(entry["files"]) == [f"{c:04d}/{i:05d}.png" for c, i in jobs] and len(entry["sha256"]) == 64
    shutil.copytree(tmp_path / "s", tmp_path / "copy")
    assert checked_folder(tmp_path / "copy", entry) == tmp_path / "copy" / "cfg1"  # read where it is now
    (tmp_path / "copy" / "cfg1" / "0007" / "00001.png").unlink()
    with pytest.raises(ValueError, match=r"copy/cfg1/0007/00001.png: missing \(1 of the 6 samples .* lists"):
        checked_folder(tmp_path / "copy", entry)
    victim = tmp_path / "s" / "cfg1" / "0003" / "00002.png"
    original = victim.read_bytes()
    shutil.copy(tmp_path / "s" / "cfg1" / "0003" / "00000.png", victim)
    with pytest.raises(ValueError, match=r"s/cfg1/0003/00002.png: changed since it was sampled"):
        checked_folder(tmp_path / "s", entry)
    # the sampler, run again, draws the changed file again (its batch alone) and the folder checks
    calls = []
    again = write_sample_folders(tmp_path / "s", settings, jobs, [1.0], fake_draw(calls), video=False)
    assert [c[0] for c in calls] == [(0, 1, 2, 3)] and victim.read_bytes() == original
    assert again["folders"]["cfg1"]["sha256"] == entry["sha256"] and checked_folder(tmp_path / "s", entry)
    (tmp_path / "s" / "cfg1" / "0003" / "00009.png").write_bytes(original)
    with pytest.raises(ValueError, match=r"0003/00009.png: not a sample .* lists \(1 such files\)"):
        checked_folder(tmp_path / "s", entry)
    with pytest.raises(ValueError, match=r"samples.json: records no sha256 of the files of cfg1/"):
        checked_folder(tmp_path / "s", {k: v for k, v in entry.items() if k != "files"})


def test_an_out_that_is_a_file_is_named(tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(NotADirectoryError, match=r"taken: is a file where a folder is needed; choose another --out"):
        write_sample_folders(tmp_path / "taken" / "s", {"seed": 0, "batch_size": 2}, [(0, 0)], [1.0], fake_draw([]),
                             video=False)


def test_a_full_disk_names_the_sample_and_a_rerun_resumes(tmp_path, monkeypatch):
    """A full disk had surfaced as a bare OSError [Errno 28] naming no file."""
    import errno

    from shared import media

    real, written = media.imageio.imwrite, []

    def full(path, *args, **kwargs):  # the disk fills up at the third sample
        written.append(path)
        if len(written) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *args, **kwargs)

    jobs = [(0, i) for i in range(4)]
    monkeypatch.setattr(media.imageio, "imwrite", full)
    with pytest.raises(OSError, match=r"cfg1/0000/00002.png: no space left on the device .* run the command again"):
        write_sample_folders(tmp_path, {"seed": 0, "batch_size": 2}, jobs, [1.0], fake_draw([]), video=False)
    monkeypatch.setattr(media.imageio, "imwrite", real)
    calls = []
    write_sample_folders(tmp_path, {"seed": 0, "batch_size": 2}, jobs, [1.0], fake_draw(calls), video=False)
    assert [c[0] for c in calls] == [(2, 3)] and not list((tmp_path / "cfg1").rglob(".*"))


def test_a_folder_is_known_by_its_guidance_key_whatever_key_the_record_stored(tmp_path):
    """samples.json had keyed its folders "1.5" while the folder was cfg1.5/ and the results cfg1.5: every file names a
    guidance scale by shared.guidance's key, and joins by it."""
    from shared.guidance import guidance_key, keyed
    from shared.sample_folders import read_samples_record

    assert [guidance_key(s) for s in (1.0, 1.5, 4, 7.25)] == ["cfg1", "cfg1.5", "cfg4", "cfg7.25"]
    jobs = [(0, i) for i in range(2)]
    settings = {"generator": "test", "seed": 0, "batch_size": 2}
    write_sample_folders(tmp_path, settings, jobs, [1.5], fake_draw([]), video=False)
    saved = json.loads((tmp_path / "samples.json").read_text())
    assert list(saved["folders"]) == ["cfg1.5"]
    saved["folders"] = {"1.5": saved["folders"]["cfg1.5"]}  # stored under another key: read by its scale's
    (tmp_path / "samples.json").write_text(json.dumps(saved))
    assert list(read_samples_record(tmp_path)["folders"]) == ["cfg1.5"]
    calls = []
    again = write_sample_folders(tmp_path, settings, jobs, [1.5, 2.0], fake_draw(calls), video=False)
    assert list(again["folders"]) == ["cfg1.5", "cfg2"] and [c[2] for c in calls] == [2.0]  # 1.5 reused, once
    with pytest.raises(ValueError, match=r"x.json: row 1 holds no guidance_scale \(written by an earlier version"):
        keyed([{"guidance_scale": 1.0}, {"guidance": 2.0}], "x.json")
    with pytest.raises(ValueError, match=r"x.json: two rows of guidance scale 2"):
        keyed([{"guidance_scale": 2}, {"guidance_scale": 2.0}], "x.json")
