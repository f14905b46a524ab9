"""The studies under experiments/ refuse bad flags, damaged results files and a workdir
made from other inputs in one line, before anything trains: each refusal here takes a
fraction of a second (no JAX work), and leaves the workdir as it was."""
import json
import subprocess
import sys

import pytest

from common.errors import UserError
from experiments import study
from helpers import ROOT


def run_script(name: str, *args) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, f"experiments/{name}.py", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)


def refusal(result: subprocess.CompletedProcess) -> str:
  """The one line a refused study prints (exit status 2, no traceback)."""
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  [line] = result.stderr.strip().splitlines()
  return line


@pytest.mark.parametrize("name, args, expected", [
    ("fid_curve", ["--runs=foo"], "error: --runs=foo: expected LABEL=WORKDIR pairs"),
    ("fid_curve", ["--runs=A=/nonexistent"],
     "error: --runs: A=/nonexistent: /nonexistent is not a directory; give the workdir"),
    ("budget", ["--curve_minutes=abc"],
     "error: --curve_minutes=abc: expected comma-separated positive numbers, e.g."),
    ("t_sweep", ["--models=foo"], "error: --models=foo: unknown ['foo']; choose from ddpm, hdd"),
    ("t_sweep", ["--noise_steps=abc"],
     "error: --noise_steps=abc: expected comma-separated positive integers, e.g."),
    ("t_sweep", ["--noise_steps=0,10"], "error: --noise_steps=0,10: expected"),
    ("augmentation", ["--architectures=foo"],
     "error: --architectures=foo: unknown ['foo']; choose from resnet18, vgg16"),
    ("hdd_vs_ddpm", ["--gammas=x"], "error: --gammas=x: expected comma-separated"),
    ("guidance", ["--data_path=d.npz", "--weights=x"], "error: --weights=x: expected"),
    ("guidance", ["--data_path=d.npz", "--stage_weights=3"], "error: --stage_weights=3: "
     "expected 2 non-negative numbers joined by ':', one per stage, e.g. --stage_weights=3:1"),
    ("guidance", ["--data_path=d.npz", "--stage_weights=3:-1"], "error: --stage_weights=3:-1: "
     "expected 2 non-negative numbers joined by ':', one per stage, e.g. --stage_weights=3:1"),
    ("guidance", ["--data_path=d.npz", "--sample_set=stages.stage1.train.ema_decay=0.9"],
     "error: --sample_set=stages.stage1.train.ema_decay=0.9: expected FIELD=VALUE with FIELD a "
     "sampling field of a cascade stage, e.g. stages.stage2.sample.low_res_noise=0.3"),
    ("guidance", ["--data_path=d.npz", "--sample_set=stages.stage2.sample.guidance_scale=5"],
     "error: --sample_set=stages.stage2.sample.guidance_scale=5: guidance_scale is set by this "
     "study's --weights, --stage_weights and --kept_eps_weights; use those"),
    ("guidance", ["--data_path=d.npz", "--sample_set=stages.stage1.sample.etta=0.5"],
     "error: --sample_set=stages.stage1.sample.etta=0.5: expected FIELD=VALUE with FIELD a "
     "field of the cascade config, e.g. stages.stage2.sample.low_res_noise=0.3"),
    ("guidance", ["--data_path=d.npz", "--sample_set=stages.stage1.sample.eta=0.5",
                  "--kept_eps_weights=3"], "error: --sample_set applies to --weights and "
     "--stage_weights; run --kept_eps_weights in a command of its own"),
    ("guidance", ["--data_path=d.npz", "--cascade_set=sed=1"],
     "error: --cascade_set=sed=1: expected FIELD=VALUE with FIELD a field of the cascade "
     "config, e.g. seed=1"),
    ("guidance", ["--data_path=d.npz", "--cascade_set=stages.stage1.sample.guidance_scale=5"],
     "error: --cascade_set=stages.stage1.sample.guidance_scale=5: guidance_scale is set by "
     "this study's --weights"),
    ("budget", ["--models=hdd,seed"], "error: --models=seed: seed 002's recipe is a CIFAR-10 "
     "recipe, not mnist's; use --dataset=cifar10 or leave seed out of --models"),
])
def test_bad_flags_are_refused_in_one_line(tmp_path, name, args, expected):
  workdir = tmp_path / "workdir"
  assert refusal(run_script(name, f"--workdir={workdir}", *args)).startswith(expected)
  assert not workdir.exists()


def fake_run(directory) -> None:
  """A finished single-model run of main.py with an FID curve of one point."""
  directory.mkdir()
  (directory / "config.json").write_text(json.dumps({"train": {"batch_size": 4}}))
  (directory / "fid_curve.json").write_text(json.dumps(
      [{"step": 2, "fid": 9.0, "train_seconds": 1.0, "num_samples": 4}]))


@pytest.mark.parametrize("name, args, recorded, difference", [
    ("t_sweep", ["--quick", "--nofid", "--dataset=fashion_mnist"], {"dataset": "mnist"},
     "dataset: 'mnist' there, 'fashion_mnist' now"),
    ("budget", ["--quick", "--dataset=fashion_mnist"], {"dataset": "mnist"},
     "dataset: 'mnist' there, 'fashion_mnist' now"),
    ("augmentation", ["--quick", "--guidance_scale=3"], {"guidance_scale": 1.0},
     "guidance_scale: 1.0 there, 3.0 now"),
    ("hdd_vs_ddpm", ["--quick", "--dataset=fashion_mnist"], {"dataset": "mnist"},
     "dataset: 'mnist' there, 'fashion_mnist' now"),
    ("guidance", ["--data_path=/data/b.npz"], {"data_path": "/data/a.npz"},
     "data_path: '/data/a.npz' there, '/data/b.npz' now"),
    ("guidance", ["--data_path=/data/a.npz", "--dataset=cifar10", "--minutes=30"],
     {"data_path": "/data/a.npz"}, "dataset: (none) there, 'cifar10' now"),
    ("guidance", ["--data_path=/data/a.npz", "--cascade_set=seed=1"],
     {"data_path": "/data/a.npz"}, "cascade_set: (none) there, ['seed=1'] now"),
    ("budget", ["--quick", "--dataset=cifar10", "--data_path=/data/train.npz",
                "--test_data_path=/data/test.npz"],
     {"dataset": "cifar10", "data_path": "/data/train.npz", "test_data_path": "/data/t.npz"},
     "test_data_path: '/data/t.npz' there, '/data/test.npz' now"),
    ("fid_curve", ["--runs=A=RUN"], {"runs": {"B": "RUN"}},
     "runs: {'B': 'RUN'} there, {'A': 'RUN'} now"),
])
def test_a_workdir_made_from_other_inputs_is_refused(tmp_path, name, args, recorded,
                                                      difference):
  run = tmp_path / "run"
  fake_run(run)
  args = [arg.replace("RUN", str(run)) for arg in args]
  recorded = json.loads(json.dumps({"study": name, **recorded}).replace("RUN", str(run)))
  difference = difference.replace("RUN", str(run))
  workdir = tmp_path / "workdir"
  workdir.mkdir()
  (workdir / "study.json").write_text(json.dumps(recorded))
  line = refusal(run_script(name, f"--workdir={workdir}", *args))
  assert line.startswith(f"error: {workdir} holds results made from other inputs (")
  assert difference in line
  assert line.endswith("); use another --workdir or the same flags")
  assert sorted(p.name for p in workdir.iterdir()) == ["study.json"]
  assert json.loads((workdir / "study.json").read_text()) == recorded


def test_open_workdir_records_what_the_results_are_made_from(tmp_path):
  workdir = tmp_path / "new"
  made_from = {"dataset": "mnist", "data_path": "/data/mnist.npz", "quick": True,
               "sizes": (14, 28)}
  study.open_workdir(str(workdir), "t_sweep", made_from)
  assert json.loads((workdir / "study.json").read_text()) == {
      "study": "t_sweep", "dataset": "mnist", "data_path": "/data/mnist.npz", "quick": True,
      "sizes": [14, 28]}
  assert study.open_workdir(str(workdir), "t_sweep", made_from).data == {}
  with pytest.raises(UserError) as refused:
    study.open_workdir(str(workdir), "budget", {**made_from, "dataset": "fashion_mnist",
                                                 "fid": False})
  assert str(refused.value) == (
      f"{workdir} holds results made from other inputs (dataset: 'mnist' there, "
      "'fashion_mnist' now; fid: (none) there, False now; study: 't_sweep' there, 'budget' "
      "now); use another --workdir or the same flags")


@pytest.mark.parametrize("text", ['{"runs": {"ddpm": ', "[1, 2]"])
def test_a_damaged_results_file_is_refused_not_overwritten(tmp_path, text):
  (tmp_path / "results.json").write_text(text)
  with pytest.raises(UserError) as refused:
    study.Results(str(tmp_path))
  message = str(refused.value)
  assert message.startswith(f"cannot read {tmp_path / 'results.json'} (")
  assert message.endswith("if it is damaged, remove it or use another --workdir")
  assert "\n" not in message
  assert (tmp_path / "results.json").read_text() == text


def test_a_damaged_workdir_stops_a_study_in_one_line(tmp_path):
  (tmp_path / "results.json").write_text('{"runs": ')
  line = refusal(run_script("t_sweep", f"--workdir={tmp_path}", "--quick", "--nofid"))
  assert line.startswith(f"error: cannot read {tmp_path / 'results.json'} (Expecting value")
  (tmp_path / "results.json").unlink()
  (tmp_path / "study.json").write_text("\x00garbage")
  line = refusal(run_script("t_sweep", f"--workdir={tmp_path}", "--quick", "--nofid"))
  assert line.startswith(f"error: cannot read {tmp_path / 'study.json'} (Expecting value")
  assert [p.name for p in tmp_path.iterdir()] == ["study.json"]
  assert (tmp_path / "study.json").read_text() == "\x00garbage"


def test_load_curve_names_a_missing_run_file(tmp_path):
  with pytest.raises(UserError, match=r"cannot read .*/config\.json \(No such file or "
                     r"directory\): give the workdir of a finished run of main\.py"):
    study.load_curve(str(tmp_path))


def test_numbers_and_choices_of_list_flags():
  assert study.numbers("gammas", ["0", "0.5"], float, "0,1") == [0.0, 0.5]
  assert study.numbers("curve_minutes", [], float, "10", positive=True, allow_empty=True) == []
  for values, kind, positive in [(["1.5"], int, False), (["nan"], float, False),
                                 (["-1"], float, False), (["0"], int, True), ([], float, False)]:
    with pytest.raises(UserError, match="^--flag="):
      study.numbers("flag", values, kind, "1", positive=positive)
  study.choices("models", ["hdd"], ("ddpm", "hdd"))
  with pytest.raises(UserError, match=r"^--models=: nothing chosen; choose from ddpm, hdd$"):
    study.choices("models", [], ("ddpm", "hdd"))


def test_guidance_cascade_set_wins_over_the_studys_training_length():
  """--cascade_set is applied after --train_steps (as budget.py's after --minutes), so a
  field it names is not silently overwritten; the other stage keeps --train_steps."""
  script = ("import sys; from absl import flags; from experiments import guidance; "
            "flags.FLAGS(sys.argv); c = guidance.guidance_config(); "
            "print(c.seed, c.stages.stage1.train.num_steps, c.stages.stage2.train.num_steps)")
  result = subprocess.run([sys.executable, "-c", script, "--workdir=w", "--data_path=d.npz",
                           "--train_steps=5", "--cascade_set=seed=1",
                           "--cascade_set=stages.stage1.train.num_steps=7"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == ["1", "7", "5"]
