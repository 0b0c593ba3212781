"""The CLI: each bad input exits 2 with one message naming key, value and what is allowed."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "run_recbole_transfer.py")


def run_cli(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def checkpoints(small_domains, workdir):
    import torch

    torch.save({"state_dict": {}}, workdir / "plain.pth")
    (workdir / "text.pth").write_text("not a checkpoint")
    (workdir / "narrow.yaml").write_text(
        "domains:\n  narrow: {base: tgt, config: {mlp_hidden_size: [64, 32, 16, 4]}}\n"
    )
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
    (["--model=TransferMLP", "--source=nosuch", "--target=tgt", "--transfer=config-1"], "source='nosuch': no atomic file"),
    (["--evaluate=plain.pth"], "not a recbole_transfer checkpoint"),
    (["--importance=text.pth"], "cannot be loaded with weights_only=True"),
    (["--model=TransferMLP", "--target=tgt", "stray"], "expected --key=value"),
]


def test_bad_inputs_exit_2_with_one_message(checkpoints, small_domains):
    from recbole_transfer import pretrain_source

    source = pretrain_source("TransferMLP", "src", None, {**small_domains, "epochs": 1}, verbose=False)
    data = f"--data_path={small_domains['data_path']}"
    for args, message in BAD:
        args = [a.replace("SRC", source.model_file) for a in args] + [data, "--epochs=1"]
        before = sorted(p.name for p in (checkpoints / "saved").glob("*.pth"))
        proc = run_cli(args, checkpoints)
        assert sorted(p.name for p in (checkpoints / "saved").glob("*.pth")) == before, args  # nothing trained
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert message in proc.stderr, (args, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, args
        assert len([line for line in proc.stderr.splitlines() if "error:" in line]) == 1


def test_one_transfer_run_then_evaluate_and_importance(small_domains, workdir):
    data = f"--data_path={small_domains['data_path']}"
    proc = run_cli(["--model=TransferMLP", "--source=src", "--target=tgt", "--transfer=config-5", data,
                    "--epochs=2", "--eval_seed=1", "--show_progress=False"], workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "transfer=config-5 (freeze)" in proc.stdout and "KL relatedness" in proc.stdout
    assert "copied, frozen" in proc.stderr and "trainable params:" in proc.stderr  # the transfer report, logged
    model_file = proc.stdout.split("model file: ")[1].strip()
    test_line = [line for line in proc.stdout.splitlines() if line.startswith("transfer=")][0]
    proc = run_cli([f"--evaluate={model_file}"], workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert test_line.split("test: ")[1] in proc.stdout  # same metrics after reload (eval_seed fixed)
    proc = run_cli([f"--importance={model_file}"], workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| fc4 | mlp_layers.mlp_layers.10 | 8 |" in proc.stdout
