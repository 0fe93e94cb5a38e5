"""docs/protocols.md, generated from the registry (eval/protocols.py) and the paper's tables (eval/paper_tables.py):
for each of the paper's Tables 1-6 the protocol of its figures, what a user needs (weights files and where people get
them, data, split) and the one command that computes our figure under it, with the fields where that run's record
still differs from the paper's protocol; then every protocol's record.

    python -m eval.protocol_page --out docs/protocols.md      # tests/test_protocols.py keeps the page up to date
"""
from __future__ import annotations

import argparse
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shared.atomic import atomic_write

from . import protocols
from .paper_tables import PAPER_PROTOCOLS, PAPER_TABLES


@dataclass(frozen=True)
class Guide:
    """How to compute our figure of a paper table under its protocol: the data, the command, and what the command's
    run records of the fields it observes (eval.protocols.run_record)."""
    table: int
    metric: str
    data: str
    command: list[str]
    observed: dict = field(default_factory=dict)


RUNS = "runs/paper"


def adm_guide(table: int, run: str, whose: str, target: str) -> Guide:
    """A generator's ImageNet figures under the ADM evaluator's protocol."""
    return Guide(table, "fid", f"{whose} 50,000 samples (`make {target} SCALE=paper`); ImageNet's `train/` folder as "
                               "the reference, its first 10,000 images",
                 ["python", "-m", "eval.sample_metrics", "--kind", "image", "--record", f"{RUNS}/{run}/samples",
                  "--reference", "/data/imagenet", "--split", "train", "--resolution", "256", "--limit", "50000",
                  "--reference-limit", "10000", "--protocol", "adm", "--inception-weights",
                  "weights-inception-2015-12-05-6726825d.pth", "--out", f"results/paper/eval/{run}"],
                 dict(items=50000, real_split="train", real_count=10000, resolution=256))


GUIDES = [
    Guide(1, "rfid", "ImageNet with its `val/<class>/*.JPEG` folder (50,000 images), at 256x256",
          ["python", "-m", "eval.tokenizer_eval", "--model", f"{RUNS}/tokenizer/joint/final", "--images",
           "/data/imagenet", "--image-split", "val", "--videos", "", "--resolution", "256", "--image-protocol",
           "omnitokenizer-rfid", "--inception-weights", "weights-inception-2015-12-05-6726825d.pth", "--out",
           "results/paper/eval/tokenizer/joint.json"],
          dict(items=None, real_split="val", real_count=None, resolution=256)),
    Guide(2, "rfvd", "UCF-101 (`<Class>/*.avi` with `ucfTrainTestlist/`), its test list, 17 frames at 256x256",
          ["python", "-m", "eval.tokenizer_eval", "--model", f"{RUNS}/tokenizer/joint/final", "--videos",
           "/data/ucf101", "--video-split", "test", "--images", "", "--resolution", "256", "--frames", "17",
           "--video-protocol", "omnitokenizer-rfvd", "--i3d-weights", "i3d_pretrained_400.pt", "--out",
           "results/paper/eval/tokenizer/joint.json"],
          dict(items=None, real_split="test", real_count=None, resolution=256, frames=17,
               clip=protocols.CENTRE_OURS)),
    adm_guide(3, "lm_imagenet", "the LM's", "lm-imagenet"),
    Guide(4, "fvd", "the LM's 2,048 UCF-101 samples (`make lm-ucf SCALE=paper`); UCF-101's train list as the "
                    "reference, 17 frames at 128x128 (the K600 column: lm_k600's samples against K600's clips at "
                    "64x64, the same way)",
          ["python", "-m", "eval.sample_metrics", "--kind", "video", "--record", f"{RUNS}/lm_ucf/samples",
           "--reference", "/data/ucf101", "--split", "train", "--frames", "17", "--resolution", "128", "--limit",
           "2048", "--protocol", "omnitokenizer-fvd", "--i3d-weights", "i3d_pretrained_400.pt", "--out",
           "results/paper/eval/lm_ucf"],
          dict(items=2048, real_split="train", real_count=2048, resolution=128, frames=17,
               clip=protocols.CENTRE_OURS, seed=None)),
    adm_guide(5, "dit_imagenet", "DiT's", "dit-imagenet"),
    Guide(6, "fvd", "Latte's 2,048 samples (`make latte-ucf SCALE=paper`); UCF-101 as StyleGAN-V prepares it: one "
                    "folder of 256x256 PNG frames per video (`<root>/<video>/<frame>.png`), train and test videos "
                    "alike",
          ["python", "-m", "eval.sample_metrics", "--kind", "video", "--record", f"{RUNS}/latte_ucf/samples",
           "--reference", "/data/ucf101_frames", "--frames", "16", "--resolution", "256", "--limit", "2048",
           "--protocol", "stylegan-v-fvd2048-16f", "--i3d-weights", "i3d_torchscript.pt", "--seed", "0", "--out",
           "results/paper/eval/latte_ucf"],
          dict(items=2048, real_split=protocols.EVERY_ITEM, real_count=2048, resolution=256, frames=16,
               clip=protocols.STYLEGAN_V_CLIPS, seed=0)),
]


def _weights(w: protocols.Weights | None) -> str:
    if w is None:
        return "none (a fixed-seed random network)"
    known = [f"{k.replace('_', ' ')} `{getattr(w, k)}`" for k in ("sha256", "sha256_prefix", "git_blob")
             if getattr(w, k)]
    return f"`{w.file}` ({w.get}); " + ("checked: " + ", ".join(known) if known else "no known hash")


def _guide(g: Guide) -> list[str]:
    name = PAPER_PROTOCOLS[g.table][g.metric]
    p = protocols.PROTOCOLS[name]
    ran = protocols.runnable_network(p)
    record = protocols.run_record(p, False, None, **g.observed)["record"]
    differs = []
    for m in [g.metric] + [m for m in PAPER_PROTOCOLS[g.table] if m != g.metric and m in p.metrics]:
        differs += [d for d in protocols.differences(record, p, m) if d not in differs]
    lines = [f"### Table {g.table}: {PAPER_TABLES[g.table]['title']}", "",
             f"- Protocol: `{name}` ({p.cites}).",
             f"- Weights: {_weights(p.network.weights)}."]
    if ran != p.network:
        lines.append(f"- This project runs {ran.name} instead: {_weights(ran.weights)}.")
    lines += [f"- Data: {g.data}.", "- Command:", "", "  ```", f"  {shlex.join(g.command)}", "  ```", "",
              "- Where its record still differs from the paper's protocol: "
              + ("; ".join(differs) + "." if differs else "nowhere: TABLES.md sets the paper's figure beside ours.")]
    return lines + [""]


def _record(p: protocols.Protocol) -> list[str]:
    rows = []
    for key, value in asdict(p).items():
        if key == "network":
            rows += [("network", value["name"]), ("weights", _weights(p.network.weights)),
                     ("network input", value["input"]), ("resize", value["resize"]), ("features", value["features"])]
        elif key not in ("name",):
            rows.append((key.replace("_", " "), protocols.field_text(key, value) if key in protocols.FIELDS else
                         (", ".join(value) if isinstance(value, tuple) else str(value))))
    return [f"### `{p.name}`", "", "| field | value |", "|---|---|",
            *[f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows], ""]


BEGIN = ("<!-- written by `python -m eval.protocol_page --out docs/protocols.md` from eval/protocols.py and "
         "eval/paper_tables.py; do not edit -->")  # the whole page is generated


def render() -> str:
    lines = ["# Evaluation protocols", "", BEGIN, "",
             "A FID, FVD, Inception Score or precision / recall depends on choices nobody writes down beside the "
             "figure: the feature network and the form of its weights, how frames become 8-bit and are resized, which "
             "frames of a clip, how many items against which real split, the seed of a random selection, and the "
             "estimators. Each is a field of a protocol's record (eval/protocols.py). Every figure in a result file "
             "keeps the record of the run that computed it, and TABLES.md sets a paper's figure beside ours only where "
             "the two records agree; elsewhere it says \"other protocol\" and names the fields that differ.", "",
             "A weights file whose hash the registry knows is checked before use: another file is an error naming the "
             "file, its hash and where to get the right one. tests/test_evaluator_equivalence.py computes each "
             "protocol's parts with the cited evaluator's own code (RELEASE_REPO, STYLEGAN_V_REPO, ADM_REPO: local "
             "checkouts) and ours, and requires the same figure to 1e-4.", "",
             "## The paper's tables", ""]
    for g in GUIDES:
        lines += _guide(g)
    lines += ["Tables 7-10 are rFID and rFVD as Tables 1 and 2 (`omnitokenizer-rfid`, `omnitokenizer-rfvd`): the "
              "same commands on the runs of `make tables SCALE=paper`.", "", "## The protocols", ""]
    for p in protocols.PROTOCOLS.values():
        lines += _record(p)
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/protocols.md")
    args = ap.parse_args(argv)
    text = render()
    atomic_write(Path(args.out), lambda tmp: Path(tmp).write_text(text))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
