"""One trained LM under several sampling settings: class consistency and novelty of each, on the same seeds.

    python -m bench.lm_sampling_sweep --run runs/small/lm_imagenet --scale small \
        --settings g1.5_k64_t0.5 g2_k64_t0.3 g3_k64_t0.5 --samples bench/out/lm_sampling \
        --out docs/results/lm_sampling
    python -m eval.generator_pages --page docs/lm_generation.md --sampling-sweep docs/results/lm_sampling

A setting is `g<guidance>_k<top-k>_t<temperature>` (top-k 0: every code). Each is sampled into its own folder
(lm_generation.sample, the config's per-class count and seed), judged (eval.class_consistency) and measured for
novelty (eval.novelty: its samples' nearest training rows beside fresh real items'; the training rows are decoded
once for every setting). One JSON per setting in --out: the settings, the judge's share (overall and per class),
the novelty figures, the model, its precision, threads and machine; eval.generator_pages turns the folder into a table.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

from eval import class_consistency, novelty
from lm_generation import sample
from shared.atomic import atomic_write_json, read_json_object
from shared.provenance import machine_name
from shared.sample_folders import checked_folder

SETTING = re.compile(r"^g(?P<g>[0-9.]+)_k(?P<k>[0-9]+)_t(?P<t>[0-9.]+)$")


def parse_setting(text: str) -> dict:
    """'g2_k64_t0.5' -> {"guidance_scale": 2.0, "top_k": 64, "temperature": 0.5}; a clear error otherwise."""
    m = SETTING.match(text)
    if not m:
        raise SystemExit(f"setting {text!r}: write g<guidance>_k<top-k>_t<temperature>, e.g. g2_k64_t0.5")
    return {"guidance_scale": float(m["g"]), "top_k": int(m["k"]), "temperature": float(m["t"])}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a trained LM run (final/, summary.json)")
    ap.add_argument("--scale", default="small", help="the sampling config and the judge's preset")
    ap.add_argument("--settings", nargs="+", required=True, help="g<guidance>_k<top-k>_t<temperature> ...")
    ap.add_argument("--samples", required=True, help="folder of the samples folders, one per setting")
    ap.add_argument("--out", required=True, help="folder of the result files, one per setting")
    args = ap.parse_args(argv)
    run, samples_root = Path(args.run), Path(args.samples)
    settings = {text: parse_setting(text) for text in args.settings}
    folders, judged, records = [], {}, {}
    for text, s in settings.items():
        folder = samples_root / text
        records[text] = sample.main(["--pipeline", str(run / "final"), "--scale", args.scale, "--out", str(folder),
                     "--guidance", str(s["guidance_scale"]), "--set", f"sample.top_k={s['top_k']}",
                     "--set", f"sample.temperature={s['temperature']}"])
        class_consistency.main(["--kind", "image", "--record", str(folder), "--scale", args.scale,
                                "--out", str(folder / "class_consistency.json")])
        judged[text] = read_json_object(folder / "class_consistency.json", "class consistency")
        (entry,) = records[text]["folders"].values()
        folders.append((s["guidance_scale"], str(checked_folder(folder, entry)), entry["sha256"]))
    measured = novelty.measure(folders, run, args.scale)
    out, written = Path(args.out), []
    for (text, s), row in zip(settings.items(), measured["novelty"]):
        record = records[text]
        cc = judged[text]["metrics"]
        (share,) = cc["class_consistency"]
        result = {"model": f"{run / 'final'} ({record['model_sha256'][:12]}...)",
                  "sampling": {**s, "top_p": 1.0, "seed": record["seed"], "per_class": record["per_class"]},
                  "judge": {k: cc[k] for k in ("classifier_accuracy", "chance")},
                  "class_consistency": {k: share[k] for k in ("share", "per_class", "n")},
                  "novelty": {k: row[k] for k in ("latent", "judge", "codes") if k in row},
                  "precision": record["precision"], "threads": torch.get_num_threads(), "machine": machine_name()}
        atomic_write_json(out / f"{text}.json", result)
        written.append(result)
    print(json.dumps({t: {"share": round(r["class_consistency"]["share"], 3),
                          "nearer_than_fresh": round(r["novelty"]["latent"]["nearer_than_fresh"], 3)}
                      for t, r in zip(settings, written)}, indent=1))
    return written


if __name__ == "__main__":
    main()
