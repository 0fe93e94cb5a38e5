"""shared.doc_blocks: a generated block keeps what it was measured from, and a block measured at scale paper is not
replaced by another scale's unless forced; the cost plan of a tiny dry run leaves docs/cost_plan.md alone."""
import json
import shutil
from pathlib import Path

import pytest

from bench import cost_plan
from shared.doc_blocks import Measured, read_measured, write_block, write_blocks

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- figures: written by a bench; do not edit -->", "<!-- end of figures -->"
OTHER_BEGIN, OTHER_END = "<!-- more: written by a bench; do not edit -->", "<!-- end of more -->"
PAPER = Measured("paper", "Some CPU (cpu, 2 threads)", "bf16")
SMALL = Measured("small", "Other CPU (cpu, 4 threads)", "fp32")


def page(tmp_path, *blocks) -> Path:
    p = tmp_path / "page.md"
    p.write_text("intro\n" + "".join(f"{b}\nold figures\n{e}\n" for b, e in blocks) + "rest\n")
    return p


def test_a_block_records_what_it_was_measured_from(tmp_path):
    p = page(tmp_path, (BEGIN, END))
    assert read_measured(p, BEGIN, END) is None
    assert write_block(p, BEGIN, END, ["| a |", "", "note; with a separator"], Measured("tiny, small", "X; Y", "fp32"))
    assert p.read_text() == (f"intro\n{BEGIN}\n<!-- measured: scale tiny, small; machine X, Y; precision fp32 -->\n\n"
                             f"| a |\n\nnote; with a separator\n{END}\nrest\n")
    assert read_measured(p, BEGIN, END) == Measured("tiny, small", "X, Y", "fp32")
    assert write_block(p, BEGIN, END, ["| b |"], SMALL)  # a later write replaces the record with its own
    assert read_measured(p, BEGIN, END) == SMALL and p.read_text().count("<!-- measured:") == 1
    assert not write_block(tmp_path / "page.md", OTHER_BEGIN, OTHER_END, ["x"], SMALL)  # no markers: untouched
    assert "| b |" in p.read_text()


def test_a_paper_block_is_kept_against_another_scale_unless_forced(tmp_path):
    p = page(tmp_path, (BEGIN, END), (OTHER_BEGIN, OTHER_END))
    write_block(p, OTHER_BEGIN, OTHER_END, ["paper figures"], PAPER)
    before = p.read_text()
    # one refusal stops the whole write: the first block, unrecorded and replaceable, is not written either
    with pytest.raises(SystemExit, match=r"page.md: .*measured at scale paper .*at scale small.*--force"):
        write_blocks(p, [(BEGIN, END, ["small figures"], SMALL), (OTHER_BEGIN, OTHER_END, ["small figures"], SMALL)])
    assert p.read_text() == before
    # a measurement that includes the paper scale replaces it; so does any, forced
    assert write_block(p, OTHER_BEGIN, OTHER_END, ["both"], Measured("small, paper", "Z", "fp32"))
    with pytest.raises(SystemExit):
        write_block(p, OTHER_BEGIN, OTHER_END, ["small figures"], SMALL)
    assert write_block(p, OTHER_BEGIN, OTHER_END, ["small figures"], SMALL, force=True)
    assert read_measured(p, OTHER_BEGIN, OTHER_END) == SMALL and "small figures" in p.read_text()


def tiny_dry_run(tmp_path) -> Path:
    """A dry run's JSON at scale tiny (bench.dry_run's fields), with one target."""
    target = {"what": "image batch 1 x 1 x 16², vq head", "precision": "fp32", "flops_per_step": 2e9,
              "memory_bytes": {"weights": 1e6, "optimizer_state": 2e6, "rest": 5e6}, "resume_exact": True,
              "step_repeatable": True, "sampling": {}}
    path = tmp_path / "dry_run.json"
    path.write_text(json.dumps({"scale": "tiny", "device": "cpu", "machine": "Some CPU", "batch": 1, "threads": 1,
                                "targets": {"tokenizer_image": target}}))
    return path


def test_a_tiny_dry_run_leaves_the_paper_cost_plan_alone(tmp_path):
    doc = tmp_path / "cost_plan.md"
    shutil.copy(REPO / "docs" / "cost_plan.md", doc)
    before = doc.read_text()
    dry = tiny_dry_run(tmp_path)
    with pytest.raises(SystemExit, match="measured at scale paper"):
        cost_plan.main(["--dry-run", str(dry), "--data", str(tmp_path / "none.json"), "--doc", str(doc)])
    assert doc.read_text() == before
    out = tmp_path / "out" / "cost_plan_tiny.md"  # what `make dry-run SCALE=tiny` does instead
    cost_plan.main(["--dry-run", str(dry), "--data", str(tmp_path / "none.json"), "--out", str(out)])
    assert doc.read_text() == before
    assert read_measured(out, cost_plan.BEGIN, cost_plan.END) == Measured("tiny", "Some CPU (cpu, 1 threads)", "fp32")
    assert "| tokenizer_image | image batch 1 x 1 x 16², vq head | 2 GFLOP |" in out.read_text()
    cost_plan.main(["--dry-run", str(dry), "--data", str(tmp_path / "none.json"), "--doc", str(doc), "--force"])
    assert read_measured(doc, cost_plan.BEGIN, cost_plan.END).scale == "tiny"
