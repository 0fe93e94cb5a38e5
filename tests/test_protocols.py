"""Evaluation protocols: the registry, the weights check, a run's record and the tables' protocol cell."""
import hashlib
import json
import subprocess
from dataclasses import asdict, replace

import pytest

from eval import experiments, protocol_match, protocols, tables
from eval.paper_tables import PAPER_PROTOCOLS, PAPER_TABLES
from eval.protocols import PROTOCOLS


def test_every_paper_table_names_registered_protocols_of_its_metrics():
    assert set(PAPER_PROTOCOLS) == set(PAPER_TABLES)
    for table, by_metric in PAPER_PROTOCOLS.items():
        for metric, name in by_metric.items():
            assert metric in PROTOCOLS[name].metrics, (table, metric, name)
    assert protocols.names("image") == ["omnitokenizer-rfid", "adm", "torch-fidelity", "project-image"]
    assert protocols.protocol("adm", "image") is PROTOCOLS["adm"]
    with pytest.raises(ValueError, match="no video protocol 'adm'; the registry .eval/protocols.py. has omnitokenizer-"
                                         "rfvd, omnitokenizer-fvd, stylegan-v-fvd2048-16f, project-video"):
        protocols.protocol("adm", "video")
    with pytest.raises(ValueError, match="quantization must be one of"):
        replace(PROTOCOLS["adm"], quantization="ceil")


def test_protocols_run_on_the_networks_this_project_runs():
    run = {n: protocols.runnable_network(p) for n, p in PROTOCOLS.items()}
    assert run["adm"] is run["omnitokenizer-rfid"] is protocols.TORCH_FIDELITY_INCEPTION  # no TensorFlow / pytorch-fid
    assert run["stylegan-v-fvd2048-16f"] is protocols.STYLEGANV_I3D
    assert run["omnitokenizer-rfvd"] is protocols.VIDEOGPT_I3D
    assert run["omnitokenizer-fvd"] is protocols.VIDEOGPT_I3D  # its shorter-side resize is another form


def test_weights_are_checked_against_every_hash_the_registry_knows(tmp_path):
    f = tmp_path / "weights.pt"
    f.write_bytes(b"not the network" * 1000)
    sha = hashlib.sha256(f.read_bytes()).hexdigest()
    blob = subprocess.run(["git", "hash-object", str(f)], capture_output=True, text=True, check=True).stdout.strip()
    assert protocols.git_blob_id(f) == blob  # the id `git hash-object` gives
    right = protocols.Weights("w.pt", "from somewhere", sha256=sha, sha256_prefix=sha[:8], git_blob=blob)
    assert protocols.check_weights(f, right) == "w.pt: sha256, sha256_prefix, git_blob checked"
    assert protocols.check_weights(f, protocols.Weights("w.pt", "x")) == "w.pt: no known hash to check"
    for wrong, says in [(dict(sha256="0" * 64), "sha256 .*, not 0000"),
                        (dict(sha256_prefix="6726825d"), "sha256 .* does not start with 6726825d"),
                        (dict(git_blob="a" * 40), f"git object id {blob}, not aaaa")]:
        with pytest.raises(ValueError, match=f"weights.pt: not w.pt \\({says}.*get it from there"):
            protocols.check_weights(f, protocols.Weights("w.pt", "there", **wrong))


def test_a_run_record_differs_from_a_protocol_only_where_the_run_did():
    adm = PROTOCOLS["adm"]
    as_adm = protocols.run_record(adm, False, "checked", items=50000, real_count=10000, resolution=256)
    assert as_adm["name"] == "adm" and as_adm["weights_check"] == "checked" and as_adm["record"]["resolution"] == "256"
    network = "network (ours Inception-v3 (2015-12-05 FID graph), torch-fidelity's PyTorch port"
    assert [d.split(" (")[0] for d in protocols.differences(as_adm["record"], adm, "fid")] == ["network"]
    assert protocols.differences(as_adm["record"], adm, "fid")[0].startswith(network)
    small = protocols.run_record(PROTOCOLS["project-image"], True, None, items=None, real_split="embedded val",
                                 real_count=None, resolution=64)
    network = small["record"]["network"]
    assert network["weights"] is None and network["name"].startswith("RANDOM-INIT")
    fid = protocols.differences(small["record"], adm, "fid")
    assert [d.split(" (")[0] for d in fid] == ["network", "resolution", "items counted", "real split", "real items"]
    assert "items counted (ours every item; paper 50000)" in fid and "resolution (ours 64; paper 256)" in fid
    assert protocols.differences(small["record"], adm, "inception_score")[-1].startswith("IS splits (ours min(10")
    assert protocols.differences(small["record"], adm, "precision")[-1].startswith("precision / recall (ours k = min")
    # a protocol without a seed takes any; one with a seed needs it
    stylegan = PROTOCOLS["stylegan-v-fvd2048-16f"]
    assert protocols.differences(protocols.run_record(stylegan, False, None, seed=7)["record"], stylegan, "fvd") == []
    seeded = protocols.run_record(PROTOCOLS["torch-fidelity"], False, None, seed=1)["record"]
    assert protocols.differences(seeded, PROTOCOLS["torch-fidelity"], "fid") == [
        "selection seed (ours 1; paper 2020)"]


def test_the_protocol_cell_sets_the_paper_figure_beside_ours_only_under_the_same_protocol():
    same = {"protocol": protocols.run_record(PROTOCOLS["stylegan-v-fvd2048-16f"], False, None, seed=3)}
    assert protocol_match.cell(6, "latte_ucf", "fvd", same) == ("stylegan-v-fvd2048-16f, as the paper: the paper's "
                                                                "figure 209.2")
    other = {"protocol": protocols.run_record(PROTOCOLS["project-video"], True, None, frames=16, real_split="test")}
    text = protocol_match.cell(6, "latte_ucf", "fvd", other)
    assert text.startswith("other protocol (project-video; the paper's: stylegan-v-fvd2048-16f): network (ours "
                           "RANDOM-INIT I3D") and "covariance (ours unbiased; paper biased)" in text
    assert "209.2" not in text
    assert protocol_match.cell(6, "latte_ucf", "fvd", {"value": 1.0}) == protocol_match.NOT_RECORDED
    as_run = protocols.run_record(PROTOCOLS["adm"], False, None)
    assert protocol_match.cell(5, "dit_imagenet", "fid", {"protocol": as_run}).startswith(
        "other protocol (adm; the paper's: adm): network (ours Inception-v3 (2015-12-05 FID graph), torch-fidelity's")
    adm = {"protocol": {"name": "adm", "record": asdict(PROTOCOLS["adm"])}}  # as the evaluator itself would run
    assert "the paper's figure 3.48" in protocol_match.cell(5, "dit_imagenet", "fid", adm, guidance=1.5)
    assert "the paper's figure 12.25" in protocol_match.cell(5, "dit_imagenet", "fid", adm, guidance=1.0)
    assert protocol_match.paper_figure(1, "Ours-VQVAE") == "1.11" and protocol_match.paper_figure(2, "Ours-VAE") == "23"
    assert protocol_match.paper_figure(4, "lm_k600") == "34.2" and protocol_match.paper_figure(8, "Plain") is None


def test_generator_rows_carry_the_protocol_cell(tmp_path):
    from .generator_results import guidance_entry, write_result

    results = tmp_path / "small"
    record = protocols.run_record(PROTOCOLS["project-image"], True, None, real_split="embedded val", resolution=64)
    write_result(results, "dit_imagenet", [guidance_entry(2.0, fid=2.0, protocol=record)])
    (row,) = tables.generation_rows(results, next(r for r in experiments.GENERATION_ROWS if r.name == "dit_imagenet"))
    assert len(row) == len(tables.GENERATION_COLUMNS) and tables.GENERATION_COLUMNS[-1] == tables.PROTOCOL_COLUMN
    assert row[-1].startswith("other protocol (project-image; the paper's: adm): network (ours RANDOM-INIT")
    assert "IS splits" in row[-1] and "precision / recall" in row[-1]  # Table 5's IS and precision / recall too


def test_the_protocol_page_is_generated_from_the_registry_and_up_to_date():
    from pathlib import Path

    from eval import protocol_page

    page = Path(__file__).resolve().parents[1] / "docs" / "protocols.md"
    assert page.read_text() == protocol_page.render(), "docs/protocols.md is stale: python -m eval.protocol_page"
    text = page.read_text()
    for table in range(1, 7):  # each of Tables 1-6: its protocol and its command
        section = text.split(f"### Table {table}:")[1].split("###")[0]
        assert f"- Protocol: `{PAPER_PROTOCOLS[table][protocol_page.GUIDES[table - 1].metric]}`" in section
        assert "  python -m eval." in section
    assert "Where its record still differs from the paper's protocol: nowhere" in text.split("### Table 6:")[1]
    for guide in protocol_page.GUIDES:  # each command names a registered protocol of its figure's kind
        flag = next(a for a in guide.command if a.endswith("-protocol") or a == "--protocol")
        name = guide.command[guide.command.index(flag) + 1]
        assert name == PAPER_PROTOCOLS[guide.table][guide.metric]


def test_tokenizer_rows_carry_the_protocol_cell(tmp_path):
    results = tmp_path / "small"
    record = protocols.run_record(PROTOCOLS["project-image"], True, None, real_split="embedded val", resolution=64)
    rfid = {"value": 3.0, "n": [4000, 4000], "dim": 2048, "full_rank_covariance": True, "network": "RANDOM-INIT x",
            "protocol": record}
    row = experiments.row(1, "Ours-VQVAE", "image")
    row.result("small", tmp_path).parent.mkdir(parents=True)
    row.result("small", tmp_path).write_text(json.dumps({"metrics": {"image": {"rfid": rfid, "items": 4000,
                                                                                "psnr": 20.0, "ssim": 0.5}}}))
    cells = tables._our_row(results, {row.run}, row, None)
    assert len(cells) == len(tables.OUR_COLUMNS) and cells[2] == "3.00"
    assert cells[-1].startswith("other protocol (project-image; the paper's: omnitokenizer-rfid): network (ours "
                                "RANDOM-INIT Inception-v3")
    assert "8-bit conversion (ours round; paper floor)" in cells[-1]
    assert "1.11" not in cells[-1]  # the paper's figure is not set beside a figure of another protocol
