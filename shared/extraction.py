"""Encode a dataset once and keep the result on disk: shards + manifest, resumable, never mixed.

Generators train on what a tokenizer makes of the data (VQ code indices for the LM, VAE posteriors for
DiT / Latte), never on pixels: the tokenizer runs once, here.

    manifest = extract(dataset, encode, out="codes/", settings={...}, shard_size=1024, batch_size=32)
    data = ShardDataset("codes/")        # every shard in memory: data.arrays["codes"], data.arrays["labels"]

Layout of `out/`:

    manifest.json            settings (what the items are), shard_size, source_items, the finished shards
                             (file, rows, items, sha256), unreadable items, complete
    shard_00000.safetensors  the rows made from source items [0, shard_size), arrays by name
    shard_00001.safetensors  ...

- `encode(batch) -> {name: tensor}` gets a collated batch of dataset items (shared.data.collate) and returns
  arrays whose first dimension is the number of rows it made: it may make several rows per item (original
  and horizontal flip), and it picks the dtype stored (uint16 code indices; float16 / float32 posterior mean
  and logvar for the diffusion generators: `{"mean": ..., "logvar": ..., "labels": ...}`). Every array of a
  shard has the same number of rows.
- `settings` is everything that makes the items what they are: the tokenizer checkpoint and its sha256
  (`file_sha256`), the precision it encoded in, resolution, frames, latent shape, augmentation, data source and
  split, and any field the caller adds. Opening a folder written with other settings (or another shard size) is
  refused with an `ExtractionError`: shards of two tokenizers are never mixed. Choose a new `out` or pass
  `restart=True`.
- Resume: a shard is written atomically and then recorded in the manifest; a killed run keeps its finished
  shards and starts again at the first missing one.
- Reading (`ShardDataset`) checks each shard against the sha256 the manifest records: a shard replaced after the
  extraction (another extraction's, of the same shape) is refused, never trained on; a manifest that records no
  shard's sha256 (an earlier version's) is refused too: extract again.
- An item the dataset cannot read (`shared.data.DataError`) is skipped, counted and listed (file and problem)
  in the manifest; the run goes on.
"""
from __future__ import annotations

import json
import math
import numbers
import time
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import five_crop
from tqdm.auto import tqdm

from shared.atomic import atomic_write, atomic_write_json, output_folder, read_json_object, remove_temporary_files
from shared.data.collate import collate
from shared.data.errors import DataError
from shared.data.keys import SampleKey
from shared.provenance import earlier_version, file_sha256

MANIFEST = "manifest.json"


class ExtractionError(ValueError):
    pass


EMBEDDED_SEED = 0  # every extraction of the embedded data: item i is drawn with seed EMBEDDED_SEED + i


class SeededItems(Dataset):
    """Item i of a dataset drawn with the fixed training key seed + i: a random crop / clip (and flip), the same on
    every run, so that an embedded dataset (endless random crops) gives a fixed set of items to encode."""

    def __init__(self, dataset: Dataset, seed: int = EMBEDDED_SEED, length: int | None = None):
        self.dataset, self.seed, self.length = dataset, seed, len(dataset) if length is None else length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        h, w = self.dataset.size
        return self.dataset[SampleKey(i, self.seed + i, h, w)]


def mirrored_labels(dataset: Dataset) -> torch.Tensor | None:
    """label -> the label of a horizontally flipped item, where flipping changes the class (the embedded clips: a
    mirrored pan left is a pan right); None where it never does."""
    base = getattr(dataset, "dataset", dataset)
    return base.mirrored_labels() if hasattr(base, "mirrored_labels") else None


def flipped_labels(labels: torch.Tensor, mirror: torch.Tensor | None) -> torch.Tensor:
    """The labels of the flipped items."""
    return labels if mirror is None else mirror.to(labels.device)[labels]


def with_flips(x: torch.Tensor, labels: torch.Tensor, flip: bool,
               mirror: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels and labels, followed (when `flip`) by their horizontal flips and the flips' labels: the rows of every
    extraction (codes and latents alike) are a batch's B originals, then their B flips."""
    if not flip:
        return x, labels
    return torch.cat([x, x.flip(-1)]), torch.cat([labels, flipped_labels(labels, mirror)])


def five_crops(x: torch.Tensor, labels: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The four corner crops and the centre crop of `size` of every image (B, 3, S, S), crop-major (5B rows); with
    with_flips after it, LlamaGen's ten-crop augmentation."""
    return torch.cat(five_crop(x, [size, size])), labels.repeat(5)


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


def _normalised(obj) -> dict:
    return json.loads(json.dumps(obj))


def _open_manifest(out: Path, settings: dict, shard_size: int, source_items: int, restart: bool) -> dict:
    """The manifest to continue from: a fresh one, or the existing one when it was written with these settings."""
    fresh = {"settings": _normalised(settings), "shard_size": shard_size, "source_items": source_items,
             "shards": [], "rows": 0, "unreadable": [], "complete": False}
    path = out / MANIFEST
    if restart and out.is_dir():  # only what an extraction writes: `out` may hold other files
        for f in [path, *out.glob("shard_*.safetensors")]:
            f.unlink(missing_ok=True)
    if not path.is_file():
        if out.is_dir() and any(out.glob("shard_*.safetensors")):
            raise ExtractionError(f"{out}: holds shards but no {MANIFEST}; choose a new --out or pass --restart")
        return fresh
    try:
        old = read_json_object(path, "extraction manifest")
    except ValueError as exc:  # truncated, corrupt, or not an object
        raise ExtractionError(f"{exc}; pass --restart to extract again") from None
    made_with = old.get("settings")
    if isinstance(made_with, dict) and set(made_with) < set(fresh["settings"]):
        lacking = ", ".join(sorted(set(fresh["settings"]) - set(made_with)))
        raise ExtractionError(earlier_version(path, f"its settings have no {lacking}",
                                              "extract again: pass --restart, or choose a new --out"))
    layout = {k: fresh[k] for k in ("settings", "shard_size", "source_items")}
    changed = [k for k in layout if old.get(k) != layout[k]]
    if changed:
        diffs = []
        for k in changed:
            if k == "settings" and isinstance(made_with, dict):
                keys = sorted(set(made_with) | set(layout[k]))
                diffs += [f"{s}: {made_with.get(s)!r} -> {layout[k].get(s)!r}" for s in keys
                          if made_with.get(s) != layout[k].get(s)]
            else:
                diffs.append(f"{k}: {old.get(k)!r} -> {layout[k]!r}")
        hint = (f" (or --precision {made_with['precision']} to go on with them)"
                if any(d.startswith("precision: '") for d in diffs) else "")
        raise ExtractionError(f"{path}: these items were extracted with other settings ({'; '.join(diffs)}); "
                              f"they are not mixed with new ones. Choose a new --out, or pass --restart to "
                              f"discard them{hint}")
    return old


def extract(dataset: Dataset, encode: Callable[[dict], dict[str, torch.Tensor]], out: str | Path, settings: dict,
            shard_size: int = 1024, batch_size: int = 32, restart: bool = False, desc: str = "extract",
            num_items: int | None = None, finish: Callable[[Path], dict] | None = None) -> dict:
    """Encode items 0..num_items-1 (default: all) of `dataset` into shards of `out`; returns the manifest.

    `dataset[i]` is a dict item (shared.data: "pixels", "label", "path"); see the module docstring for
    `encode`, `settings`, resume and refusal. finish(out) -> fields measured over the finished shards (the latents'
    scale), added to the manifest in its last write; a run killed before them computes them on resume.
    """
    out = Path(out)
    total = len(dataset) if num_items is None else num_items
    if total <= 0:
        raise ExtractionError(f"{out}: nothing to extract (the dataset has {len(dataset)} items)")
    if shard_size <= 0 or batch_size <= 0:
        raise ValueError(f"shard_size and batch_size must be positive, got {shard_size}, {batch_size}")
    output_folder(out)
    manifest = _open_manifest(out, settings, shard_size, total, restart)
    started, seconds_before = time.perf_counter(), manifest.get("extract_seconds", 0.0)  # summed over resumed calls
    n_shards = -(-total // shard_size)
    done = {s["index"] for s in manifest["shards"] if s["file"] is None or (out / s["file"]).is_file()}
    manifest["shards"] = [s for s in manifest["shards"] if s["index"] in done]
    manifest["unreadable"] = [u for u in manifest["unreadable"] if u["shard"] in done]
    todo = [k for k in range(n_shards) if k not in done]
    remove_temporary_files(out)  # what a killed write left
    # the manifest goes first, before any shard: a run killed after its first shard resumes (that shard, not yet
    # listed, is written again) instead of finding shards it cannot account for
    atomic_write_json(out / MANIFEST, manifest)
    bar = tqdm(total=total, initial=total - sum(min(shard_size, total - k * shard_size) for k in todo),
               desc=desc, unit="item")
    for k in todo:
        arrays: dict[str, list[torch.Tensor]] = {}
        unreadable = []
        first, stop = k * shard_size, min(total, (k + 1) * shard_size)
        for start in range(first, stop, batch_size):
            items = []
            for i in range(start, min(stop, start + batch_size)):
                try:
                    items.append(dataset[i])
                except DataError as exc:
                    unreadable.append({"shard": k, "item": i, "path": exc.path, "problem": exc.problem})
            if items:
                with torch.no_grad():
                    rows = encode(collate(items))
                _check_rows(rows, out)
                for name, value in rows.items():
                    arrays.setdefault(name, []).append(value.detach().cpu())
            bar.update(min(stop, start + batch_size) - start)
        tensors = {name: torch.cat(parts).contiguous() for name, parts in arrays.items()}
        rows_in_shard = next(iter(tensors.values())).shape[0] if tensors else 0
        entry = {"index": k, "file": shard_name(k) if tensors else None, "rows": rows_in_shard,
                 "items": stop - first - len(unreadable)}
        if tensors:
            atomic_write(out / shard_name(k), lambda tmp: save_file(tensors, tmp))
            entry["sha256"] = file_sha256(out / shard_name(k))  # what a reader checks: never another folder's shard
        manifest["shards"].append(entry)
        manifest["shards"].sort(key=lambda s: s["index"])
        manifest["unreadable"] += unreadable
        manifest["rows"] = sum(s["rows"] for s in manifest["shards"])
        manifest["complete"] = len(manifest["shards"]) == n_shards
        manifest["extract_seconds"] = seconds_before + time.perf_counter() - started
        atomic_write_json(out / MANIFEST, manifest)
    bar.close()
    if not manifest["shards"] or manifest["rows"] == 0:
        raise ExtractionError(f"{out}: no item could be read ({len(manifest['unreadable'])} unreadable; first: "
                              f"{manifest['unreadable'][:1]})")
    manifest["complete"] = True
    if finish is not None:
        manifest.update(finish(out))
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def _check_rows(rows: dict, out: Path) -> None:
    if not rows or not all(isinstance(v, torch.Tensor) for v in rows.values()):
        raise TypeError(f"{out}: encode must return a non-empty dict of tensors")
    lengths = {name: v.shape[0] for name, v in rows.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{out}: encode returned arrays with different numbers of rows {lengths}")


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; {folder} is not an extraction folder (run the extraction first)")
    manifest = read_json_object(path, "extraction manifest")
    if not manifest.get("complete"):
        raise ExtractionError(f"{path}: the extraction did not finish ({len(manifest['shards'])} shards written); "
                              f"run it again with the same settings to resume")
    return manifest


# safetensors dtype names -> torch dtypes (the ones an extraction writes, and their neighbours)
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                      "U16": torch.uint16, "BOOL": torch.bool}


def map_shard(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file as views of a private memory map of it (torch.UntypedStorage.from_file,
    which keeps no file descriptor open): no row is read before it is used, and the processes of a DDP run share
    the rows through the page cache instead of holding a copy each."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        size = path.stat().st_size
        data = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage.from_file(str(path), False, size))
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = SAFETENSORS_DTYPES[info["dtype"]]
            start, end = (8 + n + o for o in info["data_offsets"])
            if end - start != math.prod(info["shape"]) * dtype.itemsize or end > size:
                raise ValueError(f"tensor '{name}' does not fit the file")
            raw = data[start:end]
            if start % dtype.itemsize:  # safetensors aligns its tensors; a file that does not is read, not mapped
                raw = raw.clone()
            out[name] = raw.view(dtype).view(info["shape"])
        return out
    except (ValueError, KeyError, json.JSONDecodeError, RuntimeError) as e:
        raise ExtractionError(f"{path}: not a readable safetensors shard ({e}); pass --restart to the extraction") from e


class ShardArray:
    """One array over every shard of an extraction, rows read from the memory-mapped shards on access.

    Index it like a tensor along rows: an int gives one row; a slice, a list, a 1-D integer tensor or a boolean
    mask gives them stacked (copies: the shards are never written). `to(dtype)` converts the rows it gives;
    `load()` reads the whole array into memory. It pickles as its file names (DataLoader workers map the
    shards again instead of receiving a copy of the data)."""

    def __init__(self, files: list[Path], name: str, dtype: torch.dtype | None = None,
                 parts: list[torch.Tensor] | None = None):
        self.files, self.name, self._as = list(files), name, dtype
        self.parts = parts if parts is not None else [map_shard(f)[name] for f in self.files]
        self.ends = torch.tensor([len(p) for p in self.parts], dtype=torch.long).cumsum(0)

    def __getstate__(self) -> dict:
        return {"files": self.files, "name": self.name, "dtype": self._as}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["files"], state["name"], state["dtype"])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    @property
    def shape(self) -> torch.Size:
        return torch.Size([len(self), *self.parts[0].shape[1:]])

    @property
    def dtype(self) -> torch.dtype:
        return self._as or self.parts[0].dtype

    def to(self, dtype: torch.dtype) -> "ShardArray":
        return ShardArray(self.files, self.name, dtype, self.parts)

    def _convert(self, rows: torch.Tensor) -> torch.Tensor:
        if self._as is None or rows.dtype == self._as:
            return rows.clone()
        return (rows.to(torch.int32) if rows.dtype == torch.uint16 else rows).to(self._as)  # uint16 converts via int32

    def _rows(self, index) -> torch.Tensor:
        """Row numbers (1-D long, negatives resolved) of a slice, list, tensor or boolean mask."""
        if isinstance(index, slice):
            return torch.arange(len(self))[index].contiguous()
        rows = torch.as_tensor(index)
        if rows.dtype == torch.bool:
            if rows.shape != (len(self),):
                raise IndexError(f"a boolean mask of shape {tuple(rows.shape)} for an array of {len(self)} rows")
            return rows.nonzero().flatten()
        if rows.dim() != 1 or rows.is_floating_point() or rows.is_complex():
            raise IndexError(f"rows must be an int, a slice, or a 1-D list/tensor of ints or bools, got {index!r}")
        rows = rows.long()
        if len(rows) and not (-len(self) <= int(rows.min()) and int(rows.max()) < len(self)):
            raise IndexError(f"rows outside an array of {len(self)} rows")
        return rows % max(len(self), 1)

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, numbers.Integral) or (isinstance(index, torch.Tensor) and index.dim() == 0
                                                   and not index.is_floating_point() and index.dtype != torch.bool):
            i = int(index) + (len(self) if int(index) < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"row {int(index)} of an array of {len(self)} rows")
            k = int(torch.searchsorted(self.ends, i, right=True))
            return self._convert(self.parts[k][i - (int(self.ends[k - 1]) if k else 0)])
        rows = self._rows(index)
        shard = torch.searchsorted(self.ends, rows, right=True)
        starts = torch.cat([torch.zeros(1, dtype=torch.long), self.ends[:-1]])
        pieces, order = [self.parts[0][:0]], [torch.zeros(0, dtype=torch.long)]
        for k in shard.unique().tolist():  # gathered shard by shard, then put back in the order asked (uint16 has
            pick = (shard == k).nonzero().flatten()  # no index_put, so no writing into a preallocated tensor)
            pieces.append(self.parts[k][rows[pick] - starts[k]])
            order.append(pick)
        return self._convert(torch.cat(pieces)[torch.argsort(torch.cat(order))])

    def load(self) -> torch.Tensor:
        return self._convert(torch.cat(self.parts))


def _check_labels(labels: torch.Tensor | None, class_names: list | None, path: Path) -> None:
    """A shard's labels are classes its manifest names: one outside them would fail mid-training (an embedding index
    out of range) or train a class that does not exist."""
    if labels is None or not class_names or not labels.numel():
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= len(class_names):
        bad = low if low < 0 else high
        raise ExtractionError(f"{path}: holds label {bad}, outside the {len(class_names)} classes its {MANIFEST} "
                              f"names; the shard is corrupt or from another dataset: pass --restart to the extraction")


class ShardDataset(Dataset):
    """Every shard of an extraction folder, memory-mapped (map_shard). `arrays[name]` is one array over all shards
    (a ShardArray, as stored: uint16 codes, float16 latents ...); `dataset[i]` is {name: row i}. `manifest` is the
    manifest."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        self.folder, self.manifest = folder, read_manifest(folder)
        files, maps = [], []
        for shard in self.manifest["shards"]:
            if shard["file"] is None:
                continue
            path = folder / shard["file"]
            if not path.is_file():
                raise FileNotFoundError(f"{path}: listed in {MANIFEST} but missing; run the extraction again to "
                                        f"rewrite it")
            tensors = map_shard(path)
            if {v.shape[0] for v in tensors.values()} != {shard["rows"]}:
                raise ExtractionError(f"{path}: holds a different number of rows than {MANIFEST} says "
                                      f"({shard['rows']}); pass --restart to the extraction")
            _check_labels(tensors.get("labels"), self.manifest["settings"].get("class_names"), path)
            if "sha256" not in shard:
                raise ExtractionError(earlier_version(folder / MANIFEST, f"no sha256 of {shard['file']}",
                                                      "extract again with --restart"))
            if (actual := file_sha256(path)) != shard["sha256"]:
                raise ExtractionError(f"{path}: sha256 {actual[:12]}... is not the one {folder / MANIFEST} records "
                                      f"({shard['sha256'][:12]}...): the shard was replaced or changed after the "
                                      f"extraction (another extraction's shard?); put it back, or extract again "
                                      f"with --restart")
            files.append(path)
            maps.append(tensors)
        # each shard is mapped once; its arrays are views of that map
        self.arrays = {name: ShardArray(files, name, parts=[m[name] for m in maps]) for name in sorted(maps[0] if maps else [])}

    @property
    def settings(self) -> dict:
        return self.manifest["settings"]

    def __len__(self) -> int:
        return self.manifest["rows"]

    def __getitem__(self, i: int) -> dict:
        return {name: value[i] for name, value in self.arrays.items()}
