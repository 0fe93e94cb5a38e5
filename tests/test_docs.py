"""`make docs` (bench.docs): every generated block of the pages has the command that writes it, is rewritten from
result files alone, and a second run changes nothing."""
import shutil
from pathlib import Path

import pytest

from bench import docs

from .generator_results import guidance_entry, per_class, write_result

REPO = Path(__file__).resolve().parents[1]


def checkout(tmp_path: Path) -> Path:
    """The pages, the tables and the measurements kept beside the pages, as the repository has them."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "docs" / "results", root / "docs" / "results")
    for name in ("README.md", "TABLES.md", "tables.json", "tables.csv"):
        shutil.copy(REPO / name, root / name)
    for page in (REPO / "docs").glob("*.md"):
        shutil.copy(page, root / "docs" / page.name)
    return root


def test_every_block_of_the_pages_has_the_command_that_writes_it():
    assert docs.unlisted(REPO) == []
    assert len(docs.BLOCKS) == len({(b.page, b.begin) for b in docs.BLOCKS}) >= 17


def test_a_block_without_a_command_or_its_result_files_stops_the_run_before_anything_is_written(tmp_path):
    root = checkout(tmp_path)
    before = {p: p.read_text() for p in root.rglob("*.md")}
    with pytest.raises(SystemExit, match=r"nothing written; .*\nREADME.md, block 'tokenizer results': "
                                         r".*results/small/tokenizer.json missing \(make tokenizer SCALE=small makes "
                                         r"it\)\n.*block 'generator summary': .*lm_imagenet.json or .*lm_ucf.json"):
        docs.main(["--root", str(root)])
    page = root / "docs" / "tokenizer.md"
    page.write_text(page.read_text() + "\n<!-- new figures: written by a command; do not edit -->\n<!-- end -->\n")
    with pytest.raises(SystemExit, match=r"docs/tokenizer.md: its block '<!-- new figures: written by a command; do "
                                         r"not edit -->' has no entry in bench/docs.py's BLOCKS"):
        docs.main(["--root", str(root), "--keep-missing"])
    assert {p: p.read_text() for p in root.rglob("*.md") if p != page} == {p: t for p, t in before.items() if p != page}


def test_make_docs_rewrites_the_blocks_from_the_result_files_and_a_second_run_changes_nothing(tmp_path):
    root = checkout(tmp_path)
    write_result(root / "results" / "small", "dit_imagenet", [
        guidance_entry(1.0, share=0.5, shares=per_class(0.25, 0.75)),
        guidance_entry(2.0, share=0.75, shares=per_class(0.5, 1.0))],
        classifier={"classifier_accuracy": 0.98, "chance": 0.05, "rises_with_guidance": True})
    kept = docs.main(["--root", str(root), "--keep-missing"])
    assert any("block 'tokenizer results'" in k for k in kept) and any("block 'motion stages'" in k for k in kept)
    first = {p: p.read_text() for p in [*root.rglob("*.md"), root / "tables.json", root / "tables.csv"]}
    assert "| `make dit-imagenet` | 75% at 2 (weakest 50%) |" in first[root / "README.md"]
    assert "| Ours (DiT) | 2.0 |" in first[root / "TABLES.md"]
    # the blocks drawn from the measurements kept in docs/results/ are as the repository has them
    for name in ("cost_plan.md", "tokenizer.md"):
        assert first[root / "docs" / name] == (REPO / "docs" / name).read_text()
    assert docs.main(["--root", str(root), "--keep-missing"]) == kept
    assert {p: p.read_text() for p in first} == first


def test_the_targets_table_takes_each_figure_from_a_file_or_says_it_was_not_measured(tmp_path, monkeypatch):
    import json

    from bench import target_costs

    root = tmp_path / "checkout"
    (root / "runs" / "small" / "tokenizer").mkdir(parents=True)
    (root / "runs" / "small" / "tokenizer" / "model.bin").write_bytes(b"x" * 3 * 2**20)
    (root / "results" / "small").mkdir(parents=True)
    (root / "results" / "small" / "tokenizer.json").write_text(json.dumps({
        "wall_seconds": 600.0, "machine": "a test CPU",
        "stages": {"image": {"threads": 2, "precision": "fp32"}, "joint": {"threads": 1, "precision": "fp32"}}}))
    write_result(root / "results" / "small", "dit_imagenet", [guidance_entry(1.0)])
    monkeypatch.setattr(target_costs, "docs_seconds", lambda scale, results: {"seconds": 12.0, "blocks_left": 0})
    report = target_costs.main(["--root", str(root), "--out", str(tmp_path / "costs.json")])
    page = tmp_path / "README.md"
    page.write_text(f"{target_costs.BEGIN}\n{target_costs.END}\n")
    target_costs.main(["--from-result", str(tmp_path / "costs.json"), "--doc", str(page)])
    rows = {line.split(" | ")[0]: line.split(" | ") for line in page.read_text().splitlines() if line.startswith("| `")}
    assert rows["| `make tokenizer`"][2:4] == ["10.0 min; a test CPU, threads 2, 1 (`results/small/tokenizer.json`)",
                                              "3 MB"]
    assert rows["| `make dit-imagenet`"][2].startswith("10.0 min (extraction 0.5 + training 8.3 + sampling 1.0 + "
                                                       "evaluation 0.2); a test CPU, threads 2")
    assert rows["| `make dit-imagenet`"][3].endswith(" KB (`runs/<scale>/dit_imagenet`, "
                                                     "`results/<scale>/eval/dit_imagenet` not on disk)")
    assert rows["| `make latte-ucf`"][2:4] == ["not measured", "not measured"]
    assert rows["| `make docs`"][2:4] == ["12 s", "none kept"] and report["targets"]["test"]["disk_bytes"] == {}
    assert "<!-- measured: scale small; machine a test CPU (2, 1 threads); precision fp32 -->" in page.read_text()
