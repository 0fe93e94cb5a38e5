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
    assert saved["folders"]["1.5"]["n"] == 6 and saved["threads"] == 1 and saved == json.loads(json.dumps(record))
    # killed: a missing file is drawn again from its batch's seed alone, the same pixels
    victim = tmp_path / "cfg1.5" / "0007" / "00002.png"
    before = victim.read_bytes()
    victim.unlink()
    calls.clear()
    write_sample_folders(tmp_path, settings, jobs, [1.0, 1.5], fake_draw(calls), video=False)
    assert calls == [((4, 5), 200007, 1.5)] and victim.read_bytes() == before
    with pytest.raises(ValueError, match="other settings .*seed"):
        write_sample_folders(tmp_path, {**settings, "seed": 3}, jobs, [1.0], fake_draw([]), video=False)
