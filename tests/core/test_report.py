"""``platform report``: result rows from run folders, result files, and the plots drawn from them."""

import json
import struct
from pathlib import Path

import attrs
import pytest

from core.base.errors import ConfigError
from core.build.run import prepare
from core.cli.main import main
from core.report import plots
from core.report import summary as report
from core.experiment.config import RunConfig
from core.train.loop import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_data_dir):
    """Three tiny runs: two epochs with a validation split, and one epoch on dev under two seeds."""
    folder = tmp_path_factory.mktemp("report")
    base = RunConfig(tasks=("sst", "quora", "sts"), checkpoint="tiny", limit=24, batch_size=8, eval_batch_size=16,
                     max_length=32, epochs=2, lr=1e-3, sampler="rrobin", data_dir=str(tiny_data_dir), threads=1,
                     device="cpu", precision="fp32", log_every=1, validation_split=0.25,
                     output_dir=str(folder / "validated"))
    configs = [base, attrs.evolve(base, epochs=1, validation_split=0.0, output_dir=str(folder / "seed-1")),
               attrs.evolve(base, epochs=1, validation_split=0.0, seed=2, output_dir=str(folder / "seed-2"))]
    for config in configs:
        train(prepare(config))
    return [Path(config.output_dir) for config in configs]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # the IHDR chunk: width, height


def test_a_row_holds_what_the_run_folder_says(runs):
    row = report.summarize(runs[0], command="platform run --validation-split 0.25", note="tiny, 1 thread")
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    config = json.loads((runs[0] / "config.json").read_text())
    assert row["name"] == row["label"] == "validated" and row["format"] == report.FORMAT
    assert row["command"] == "platform run --validation-split 0.25" and row["note"] == "tiny, 1 thread"
    assert row["selected_on"] == "validation" and row["best"] == metrics["best"] and row["dev"] == metrics["dev"]
    assert row["history"] == metrics["history"] and row["examples_seen"] == metrics["examples_seen"]
    assert row["config"]["validation_split"] == 0.25 and row["config"] == {k: config[k] for k in report.CONFIG_KEYS}
    steps = metrics["history"][-1]["step"]
    assert sorted(row["train_loss"]) == ["quora", "sst", "sts"]
    assert [point[0] for point in row["train_loss"]["sst"]] == list(range(1, steps + 1))  # --log-every 1
    assert all(point[1] > 0 for points in row["train_loss"].values() for point in points)
    assert row["machine"]["cores"] >= 1 and row["machine"]["torch"]
    on_dev = report.summarize(runs[1])
    assert on_dev["selected_on"] == "dev" and on_dev["dev"] == {k: v for k, v in on_dev["best"].items() if k != "epoch"}


def test_rows_read_back_from_their_files_and_other_files_are_refused(runs, tmp_path):
    row = report.summarize(runs[0])
    path = report.write(row, tmp_path / "results")
    assert path == tmp_path / "results" / "validated.json" and report.load_rows([path]) == [row]
    assert report.load_rows([runs[1]])[0]["name"] == "seed-1"
    (tmp_path / "other.json").write_text('{"best": {}}')
    with pytest.raises(ConfigError, match="not a result file of `platform report`"):
        report.load_rows([tmp_path / "other.json"])
    with pytest.raises(ConfigError, match="no such run folder or result file"):
        report.load_rows([tmp_path / "missing.json"])
    with pytest.raises(ConfigError, match="not a run folder"):
        report.summarize(tmp_path)


def test_the_scores_plot_draws_each_rows_dev_scores_and_the_mean_of_seeds(runs):
    rows = [report.summarize(runs[0]), *(report.summarize(run, label="one epoch") for run in runs[1:])]
    figure = plots.scores_figure(rows, ["sst", "sts"], targets={"sts": 0.88})
    axes = figure.axes[0]
    heights = [bar.get_height() for bar in axes.patches]
    seeds = [row["dev"] for row in rows[1:]]
    assert heights == pytest.approx([rows[0]["dev"]["sst"], sum(d["sst"] for d in seeds) / 2,
                                     rows[0]["dev"]["sts"], sum(d["sts"] for d in seeds) / 2])
    assert [tick.get_text() for tick in axes.get_xticklabels()] == ["validated", "one epoch"]
    mean, sd, n = report.grouped(rows, "sts")["one epoch"]
    assert n == 2 and sd == pytest.approx(abs(seeds[0]["sts"] - seeds[1]["sts"]) / 2 ** 0.5)
    assert [line.get_ydata()[0] for line in axes.get_lines() if line.get_linestyle() == "--"] == [0.88]


def test_the_curves_plot_draws_the_epochs_and_the_training_losses(runs):
    row = report.summarize(runs[0])
    scores, losses = plots.curves_figure(row).axes
    drawn = {line.get_label(): list(line.get_ydata()) for line in scores.get_lines()}
    for task in ("sst", "quora", "sts"):
        assert drawn[f"{task} (validation)"] == [record[task] for record in row["history"]]
        assert drawn[f"{task} dev"] == [row["dev"][task]]
    curves = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in losses.get_lines()
              if not line.get_label().startswith("_")}
    assert curves["sts"] == ([p[0] for p in row["train_loss"]["sts"]], [p[1] for p in row["train_loss"]["sts"]])


def test_the_command_writes_result_files_and_plots_of_their_size(runs, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["report", str(runs[0]), "--json-dir", str(out), "--command", "platform run ...", "--note", "n"]) == 0
    assert main(["report", str(out / "validated.json"), str(runs[1]), "--plot", str(out), "--curves", "validated",
                 "--targets", "sst=0.53,sts=0.88"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / "validated.json"), str(out / "scores.png"), str(out / "curves-validated.png")]
    assert json.loads((out / "validated.json").read_text())["command"] == "platform run ..."
    assert png_size(out / "scores.png") == (1000, 500) and png_size(out / "curves-validated.png") == (1200, 450)


@pytest.mark.parametrize("args,message", [
    (["--curves", "nope", "--plot", "{tmp}"], "--curves nope: no such row; the rows are seed-1"),
    (["--curves", "seed-1"], "--curves NAME draws into the --plot folder: give --plot DIR too"),
    (["--targets", "sst=high", "--plot", "{tmp}"], "--targets: bad entry 'sst=high'; expected TASK=SCORE"),
])
def test_bad_report_options_give_one_clear_message(runs, tmp_path, capsys, args, message):
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    assert main(["report", str(runs[1]), *args]) == 2
    assert capsys.readouterr().err.startswith(f"platform report: error: {message}")


def test_command_and_name_describe_one_run_folder(runs, capsys):
    assert main(["report", str(runs[1]), str(runs[2]), "--command", "x", "--json-dir", "unused"]) == 2
    assert "--command and --name describe one run: give one run folder with them" in capsys.readouterr().err
    assert not Path("unused").exists()


def test_the_table_has_a_line_per_label_with_seeds_as_mean_and_sd(runs, capsys):
    rows = [report.summarize(runs[0], label="validated"), *(report.summarize(run, label="seeds") for run in runs[1:])]
    assert main(["report", str(runs[0]), "--label", "validated", "--table", "--tasks", "sts,sst"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("| configuration | seeds | sts | sst | mean |")
    lines = report.markdown_table(rows).splitlines()
    assert len(lines) == 4 and lines[0].count("|") == lines[1].count("|") == lines[2].count("|")
    validated, seeds = (line.split(" | ") for line in lines[2:])
    assert validated[:3] == ["| validated", "1", f"{rows[0]['dev']['sst']:.4f}"]
    assert validated[6:8] == [f"{rows[0]['best']['epoch'] + 1} of 2", "validation"]
    sst = [row["dev"]["sst"] for row in rows[1:]]
    mean, sd = sum(sst) / 2, abs(sst[0] - sst[1]) / 2 ** 0.5
    assert seeds[:3] == ["| seeds", "2", f"{mean:.4f} ± {sd:.4f}"] and seeds[7] == "dev"
    assert "[seed-1](results/seed-1.json), [seed-2](results/seed-2.json)" in seeds[-1]


def test_relabel_gives_rows_of_several_studies_the_labels_of_this_table_and_keeps_their_files(runs, tmp_path,
                                                                                                capsys):
    out = tmp_path / "results"
    assert main(["report", str(runs[1]), "--json-dir", str(out), "--label", "seed 1"]) == 0
    capsys.readouterr()
    assert main(["report", str(out / "seed-1.json"), str(runs[2]), "--table", "--plot", str(out),
                 "--relabel", "seed-1=one epoch,seed-2=one epoch"]) == 0
    *table, printed = capsys.readouterr().out.splitlines()
    assert len(table) == 3 and table[2].split(" | ")[:2] == ["| one epoch", "2"]  # one label: its two seeds
    assert printed == str(out / "scores.png")
    assert json.loads((out / "seed-1.json").read_text())["label"] == "seed 1"
    assert main(["report", str(runs[1]), "--relabel", "seed-9=x"]) == 2
    assert "--relabel seed-9: no such row; the rows are seed-1" in capsys.readouterr().err


@pytest.mark.parametrize("content, what", [
    ('{"best": {"epoch": 0, "sst"', "Expecting ':' delimiter: line 1 column 28 (char 27)"),  # cut short
    ("[1, 2]", "a JSON list, not an object"),
    ('{"best": {"epoch": 0}}', "no history"),
])
def test_a_corrupt_metrics_file_is_one_line(runs, tmp_path, capsys, content, what):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(runs[1], folder)
    (folder / "metrics.json").write_text(content)
    code = main(["report", str(folder), "--table"])
    assert code == 2 and capsys.readouterr().err == (
        f"platform report: error: {folder / 'metrics.json'}: not a readable metrics file ({what}); "
        f"`platform run --resume {folder}` writes it again\n")
