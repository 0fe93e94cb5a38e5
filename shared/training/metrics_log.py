"""metrics.jsonl and TensorBoard for one training run, on the main process only.

On a resume at step s, rows after s (written after the checkpoint the run resumes from) are dropped from
metrics.jsonl and TensorBoard's events are purged from s on, so each step appears once."""
from __future__ import annotations

import json
from pathlib import Path

from shared.atomic import atomic_write


class MetricsLog:
    def __init__(self, folder: str | Path, start_step: int = 0, enabled: bool = True):
        self.enabled = enabled
        self.path = Path(folder) / "metrics.jsonl"
        self.file = self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and _step_of(line) is not None and _step_of(line) <= start_step]
            atomic_write(self.path, lambda tmp: Path(tmp).write_text("".join(f"{line}\n" for line in kept)))
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(folder) / "tb"), purge_step=start_step + 1)
        self.file = open(self.path, "a")

    def log(self, step: int, record: dict, prefix: str = "train") -> None:
        """One row {"step": step, **record}; float values also go to TensorBoard as `<prefix>/<name>`."""
        if not self.enabled:
            return
        self.file.write(json.dumps({"step": step, **record}) + "\n")
        self.file.flush()
        self.scalars(step, record, prefix)

    def scalars(self, step: int, values: dict, prefix: str) -> None:
        """TensorBoard only (validation figures, which summary.json holds)."""
        if self.enabled:
            for k, v in values.items():
                if isinstance(v, float):
                    self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.writer:
            self.writer.close()
        self.file = self.writer = None


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None
