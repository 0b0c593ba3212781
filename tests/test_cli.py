"""The CLI: each bad input exits 2 with one message naming key, value and what is allowed, before any training.

Commands run in this process (the ``run_cli`` fixture of conftest.py); one test runs the real entry point
``run_recbole_transfer.py`` in a fresh process, as a user does.
"""

import logging
import os
import subprocess
import sys

import pytest

from recbole_transfer import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "run_recbole_transfer.py")


def test_the_entry_point_script_exits_2_with_one_error_line_and_no_traceback(tmp_path):
    """The real entry point in a fresh process (what a user runs): a bad input is one line on stderr, exit code 2."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    proc = subprocess.run([sys.executable, SCRIPT, "--model=NoSuchModel", "--target=ml-100k"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("run_recbole_transfer.py: error: model='NoSuchModel': unknown model"), proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stdout == "" and not (tmp_path / "saved").exists()


@pytest.fixture
def checkpoints(small_domains, workdir):
    import torch

    torch.save({"state_dict": {}}, workdir / "plain.pth")
    (workdir / "text.pth").write_text("not a checkpoint")
    (workdir / "narrow.yaml").write_text(
        "domains:\n  narrow: {base: tgt, config: {mlp_hidden_size: [64, 32, 16, 4]}}\n"
    )
    (workdir / "broken.yaml").write_text("epochs: 3\nlearning_rate: [0.1\n")
    (workdir / "list.yaml").write_text("- epochs: 3\n- learning_rate: 0.1\n")
    (workdir / "blocker").write_text("a file, not a folder")
    return workdir


BAD = [
    (["--model=NoSuchModel", "--target=tgt"], "model='NoSuchModel': unknown model"),
    (["--model=TransferMLP", "--source=src", "--target=tgt", "--transfer=config-9"], "transfer='config-9': unknown configuration"),
    (["--model=TransferMLP", "--source=src", "--target=tgt", "--transfer=[fc1,fc9]"], "layer 'fc9' not found"),
    (["--model=TransferMLP", "--source=src", "--target=tgt", "--transfer=config-1", "--mlp_hidden_size=[64,32,16,4]",
      "--source_checkpoint=SRC"], "in the source but"),
    (["--model=TransferMLP", "--source=src", "--target=narrow", "--transfer=config-1", "--config_files=narrow.yaml"],
     "in the source but"),
    (["--model=TransferMLP", "--source=src", "--target=tiny"], "target='tiny': "),
    (["--model=TransferMLP", "--source=src", "--target=tgt", "--transfer=[user_embedding,fc1]"], "id spaces differ"),
    (["--model=TransferMLP", "--source=src", "--target=tgt", "--tranfer_mode=freeze"], "did you mean 'transfer_mode'"),
    # the strategy's own keys are checked when the run builds its strategy, before the source stage
    (["--model=TransferMLP", "--source=src", "--target=tgt", "--transfer=config-1", "--transfer_mode=frozen"],
     "transfer_mode='frozen': must be one of freeze, finetune"),
    (["--model=TransferMLP", "--source=src", "--target=tgt", "--transfer=drr"], "a transfer of method 'mmtnet'; use --model=MMTNet"),
    (["--model=TransferMLP", "--source=nosuch", "--target=tgt", "--transfer=config-1"], "source='nosuch': no atomic file"),
    (["--evaluate=plain.pth"], "not a recbole_transfer checkpoint"),
    (["--importance=text.pth"], "cannot be loaded with weights_only=True"),
    (["--model=TransferMLP", "--target=tgt", "stray"], "expected --key=value"),
    # found only after minutes of work before they were checked up front
    (["--model=TransferMLP", "--source=src", "--scenario", "--targets=[tgt,tgtt]"], "targets='tgtt': no atomic file"),
    (["--model=TransferMLP", "--source=src", "--target=tgt", "--scenario", "--seeds=[a,b]"], "--seeds='[a,b]': expected non-negative integers"),
    (["--model=TransferMLP", "--source=src", "--target=tgt", "--epochs=abc"], "epochs='abc': must be an integer >= 1"),
    (["--model=TransferMLP", "--source=src", "--target=tgt", "--train_batch_size=0"], "train_batch_size=0: must be an integer >= 1"),
    (["--model=TransferMLP", "--source=src", "--target=tgt", "--learning_rate=fast"], "learning_rate='fast': must be a number > 0"),
    (["--model=TransferMLP", "--source=src", "--target=tgt", "--config_files=broken.yaml"], "broken.yaml' is not valid YAML"),
    (["--model=TransferMLP", "--source=src", "--target=tgt", "--config_files=list.yaml"], "list.yaml' holds a YAML list"),
    (["--model=TransferMLP", "--source=src", "--target=tgt", "--scenario", "--output=blocker/run"], "--output='blocker/run': cannot write"),
    # every arm's strategy is built before the scenario's source stage
    (["--model=TransferMLP", "--source=src", "--scenario", "--targets=[tgt]", "--arms=[none,config-1]", "--transfer_mode=frozen"],
     "transfer_mode='frozen': must be one of freeze, finetune"),
    (["--model=TransferMLP", "--source=src", "--scenario", "--targets=[tgt]", "--arms=[]"], "--arms='[]': no arm given"),
    (["--model=PeterRec", "--target=gender", "--transfer=config-3"], "a transfer of method 'layer_transfer'; use --model=TransferMLP"),
    (["--import=no_such_module", "--target=tgt"], "--import='no_such_module': cannot import it"),
    (["--model=GRU4Rec", "--source=src", "--target=tgt",
      "--eval_args={'split': {'LS': 'valid_and_test'}, 'group_by': 'user', 'order': 'RO', 'mode': 'uni99'}"],
     "GRU4Rec is a sequential model and RecBole splits its sequences in time order only; set eval_args.order: TO"),
    (["--model=GRU4Rec", "--source=src", "--target=tgt", "--train_neg_sample_args={'distribution': 'uniform', 'sample_num': 1}"],
     "should be None when the loss_type is CE.; set train_neg_sample_args: ~"),
    (["--model=GRU4Rec", "--source=src", "--target=tgt", "--keep_fraction=0.5"],
     "GRU4Rec is a sequential model; RecBole builds each training row's item history before the split"),
    (["--model=TransferMLP", "--source=src", "--target=tgt",
      "--eval_args={'split': {'LS': 'valid_only'}, 'group_by': 'user', 'order': 'RO', 'mode': 'uni99'}"],
     "a run needs a validation part (early stopping, selection) and a test part"),
    (["--model=TransferMLP", "--source=src", "--target=tgt", "--protocol_dir=blocker/protocols"],
     "protocol_dir='blocker/protocols': cannot write the protocol there"),
]


def test_bad_inputs_exit_2_with_one_message_before_any_training(checkpoints, small_domains, run_cli):
    source = pretrain_source_file(small_domains)
    data = f"--data_path={small_domains['data_path']}"
    for args, message in BAD:
        args = [a.replace("SRC", source) for a in args] + [data]
        if not any(a.startswith("--epochs") for a in args):
            args.append("--epochs=1")
        before = sorted(p.name for p in (checkpoints / "saved").glob("*.pth"))
        code, _out, err = run_cli(args)
        assert sorted(p.name for p in (checkpoints / "saved").glob("*.pth")) == before, args  # nothing trained
        assert code == 2, (args, err[-2000:])
        assert message in err, (args, err[-2000:])
        assert len([line for line in err.splitlines() if "error:" in line]) == 1, (args, err[-2000:])


def pretrain_source_file(small_domains):
    from recbole_transfer import pretrain_source

    return pretrain_source("TransferMLP", "src", None, {**small_domains, "epochs": 1}, verbose=False).model_file


def test_bad_inputs_of_long_commands_on_the_bundled_scenarios_exit_2_in_seconds(workdir, run_cli):
    (workdir / "blocker").write_text("a file, not a folder")
    cases = [
        (["--scenario", "--targets=[action,comdy]"], "targets='comdy': no atomic file"),
        (["--scenario", "--targets=[action,comdy]"], "(a declared domain; did you mean 'comedy'?)"),
        (["--tune", "--target=actoin"], "did you mean 'action'?"),
        (["--model=PeterRec", "--scenario", "--targets=[gendr]"], "did you mean 'gender'?"),
        (["--model=MMTNet", "--tune", "--target=region_9"], "targets='region_9': no atomic file"),
        (["--model=SML", "--output=blocker/sml"], "--output='blocker/sml': cannot write"),
    ]
    for args, message in cases:
        code, _out, err = run_cli(args)
        assert code == 2 and message in err, (args, err[-2000:])
        assert not (workdir / "saved").exists() or not list((workdir / "saved").rglob("*.pth")), args


def test_one_transfer_run_then_evaluate_and_importance(small_domains, workdir, run_cli, caplog):
    data = f"--data_path={small_domains['data_path']}"
    caplog.set_level(logging.INFO, logger="recbole_transfer")
    code, out, err = run_cli(["--model=TransferMLP", "--source=src", "--target=tgt", "--transfer=config-5", data,
                              "--epochs=2", "--show_progress=False"])
    assert code == 0, err[-3000:]
    assert "transfer=config-5 (freeze)" in out and "KL relatedness" in out
    assert "copied, frozen" in caplog.text and "trainable params:" in caplog.text  # the transfer report, logged
    model_file = out.split("model file: ")[1].strip()
    test_line = [line for line in out.splitlines() if line.startswith("transfer=")][0]
    code, out, err = run_cli([f"--evaluate={model_file}"])
    assert code == 0, err[-3000:]
    assert test_line.split("test: ")[1] in out  # same metrics after reload (the protocol's candidates)
    code, out, err = run_cli([f"--importance={model_file}"])
    assert code == 0, err[-3000:]
    assert "| fc4 | mlp_layers.mlp_layers.10 | 8 |" in out


def test_a_sequential_recbole_model_runs_layer_transfer_on_derived_ml100k_domains(workdir, run_cli):
    """Derived domains keep ml-100k's timestamp and rating; a sequential model gets RecBole's order TO."""
    (workdir / "west.yaml").write_text(
        "domains:\n"
        "  west_drama: {base: ml-100k, users: {field: zip_code, values: ['9'], match: prefix},"
        " items: {field: class, values: [Drama], match: first}}\n"
        "  west_comedy: {base: ml-100k, users: {field: zip_code, values: ['9'], match: prefix},"
        " items: {field: class, values: [Comedy], match: first}, time: {start: '1997-11-01'}}\n"
    )
    code, out, err = run_cli(["--model=GRU4Rec", "--source=west_drama", "--target=west_comedy", "--transfer=[gru_layers]",
                              "--config_files=west.yaml", "--epochs=2", "--MAX_ITEM_LIST_LENGTH=10",
                              "--embedding_size=16", "--hidden_size=16"])  # a small GRU: the test is about the pipeline
    assert code == 0, err[-3000:]
    assert "transfer=gru_layers (freeze)  test: {'hit@10'" in out
    import torch

    from recbole_transfer.pipeline.two_stage import load_transfer_model

    config, model, *_ = load_transfer_model(out.split("model file: ")[1].strip())
    assert config["eval_args"]["order"] == "TO" and config["train_neg_sample_args"]["distribution"] == "none"
    source = [f for f in (workdir / "saved").glob("GRU4Rec-west_drama-source-*.pth")][0]
    from recbole_transfer.trainer import load_checkpoint

    source_state = load_checkpoint(source)["state_dict"]
    frozen = [n for n, p in model.named_parameters() if n.startswith("gru_layers.")]
    assert frozen and all(torch.equal(model.state_dict()[n], source_state[n]) for n in frozen)


def test_seed_is_a_config_key_not_an_abbreviation_of_seeds():
    args, extra = cli.build_parser().parse_known_args(["--scenario", "--seed=7", "--seeds=[1,2]"])
    assert args.seeds == "[1,2]" and cli.parse_extra(extra) == {"seed": 7}
