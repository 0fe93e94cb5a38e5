"""The GPU check's CPU path at tiny (bench/gpu_check.py): every part runs and reports what a GPU run would."""
import json

from bench.dry_run import targets
from bench.gpu_check import main


def test_the_gpu_check_runs_every_part_at_tiny_on_a_cpu_and_skips_what_the_budget_leaves_out(tmp_path):
    out = tmp_path / "gpu_check.json"
    report = main(["--scale", "tiny", "--device", "cpu", "--eager-only", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    parts = report["parts"]
    assert list(parts) == ["dry_run", "train", "decode", "tokenizer"]
    assert list(parts["dry_run"]) == list(targets("tiny"))
    assert list(parts["train"]) == ["dit", "latte", "lm"] and list(parts["tokenizer"]) == ["image", "clip"]
    cases = [case for part in parts.values() for case in part.values()]
    assert not [case for case in cases if "error" in case or "skipped" in case]
    for case in [*parts["dry_run"].values(), *parts["train"].values(), *parts["tokenizer"].values()]:
        assert case["flops_per_step"] > 0 and 0 < case["fraction_of_matmul_rate"] and case["mfu"] is None  # a CPU
    assert parts["decode"]["lm"]["tokens_per_s"]["eager"] > 0
    # a budget that is spent: the cases are named as skipped, and the file says so
    spent = main(["--scale", "tiny", "--device", "cpu", "--parts", "train", "--budget", "0", "--out", str(out)])
    assert all(case["skipped"].startswith("0 s of the budget left") for case in spent["parts"]["train"].values())
