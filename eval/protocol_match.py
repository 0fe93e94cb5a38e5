"""Whether one of our figures was computed under the protocol of the paper's figure it stands for: the tables' protocol
cell. The paper's figure is set beside ours only where the run's record (eval/protocols.py, kept in the result file)
and the paper's protocol (eval/paper_tables.py PAPER_PROTOCOLS) agree on every field the metric depends on; otherwise
the cell says "other protocol" and names each field that differs.
"""
from __future__ import annotations

from . import protocols
from .paper_tables import PAPER_PROTOCOLS, PAPER_TABLES

# our row (a tokenizer row's label, a generator row's name) -> the paper's figure it stands for: the paper row's cells
# that name it (column -> value) and the figure's column; Table 5's generator: the guided row beyond guidance 1
PAPER_FIGURES = {
    (1, "Ours-VQVAE"): ({"Method": "Ours-VQVAE", "Dataset": "ImageNet"}, "rFID"),
    (1, "Ours-VAE"): ({"Method": "Ours-VAE", "Dataset": "ImageNet"}, "rFID"),
    (2, "Ours-VQVAE"): ({"Method": "Ours-VQVAE"}, "UCF rFVD"), (2, "Ours-VAE"): ({"Method": "Ours-VAE"}, "UCF rFVD"),
    (3, "lm_imagenet"): ({"Method": "Ours", "#Param": "227M"}, "FID"),
    (4, "lm_ucf"): ({"Method": "Ours", "#Param": "227M"}, "UCF FVD"),
    (4, "lm_k600"): ({"Method": "Ours", "#Param": "227M"}, "K600 FVD"),
    (5, "dit_imagenet"): ({"Method": "Ours-DiT-XL/2"}, "FID"), (6, "latte_ucf"): ({"Method": "Ours-Latte"}, "FVD"),
}
NOT_RECORDED = "protocol not recorded (evaluated before results recorded their protocol): evaluate again"


def paper_figure(table: int, row: str, guidance: float | None = None) -> str | None:
    """The paper's figure our row `row` stands for, or None where the table has no single one."""
    spec = PAPER_FIGURES.get((table, row))
    if spec is None:
        return None
    cells, column = spec
    if table == 5 and guidance is not None and guidance > 1:
        cells = {**cells, "Method": cells["Method"] + "-CFG"}
    t = PAPER_TABLES[table]
    at = {c: i for i, c in enumerate(t["columns"])}
    for row_cells in t["rows"]:
        if all(row_cells[at[c]] == v for c, v in cells.items()):
            return row_cells[at[column]]
    raise KeyError(f"eval/protocol_match.py: no paper row {cells} in Table {table}")


def cell(table: int, row: str, metric: str, figure: dict, guidance: float | None = None) -> str:
    """The protocol cell of our row: the paper's figure where the protocols match, else "other protocol" and the
    fields that differ. figure: a result's metric entry, with its "protocol" record."""
    recorded = figure.get("protocol")
    if recorded is None:
        return NOT_RECORDED
    paper = PAPER_PROTOCOLS[table]
    name = paper.get(metric) or next(iter(paper.values()))
    fields, theirs = [], protocols.PROTOCOLS[name]
    for m in [metric] + [m for m in paper if m != metric and m in theirs.metrics]:
        fields += [d for d in protocols.differences(recorded["record"], theirs, m) if d not in fields]
    if fields:
        return f"other protocol ({recorded['name']}; the paper's: {name}): " + "; ".join(fields)
    figure = paper_figure(table, row, guidance)
    return f"{name}, as the paper" + (f": the paper's figure {figure}" if figure is not None else "")
