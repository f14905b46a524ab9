"""Multi-process training on one machine: main.py as 2 CPU processes joined by
jax.distributed on 127.0.0.1 trains the same parameters as 1 process with the same global
batch and seed; one killed with SIGKILL, the other fails in one line, and restarted they
resume where they were. Each process reads only its half of every batch; only process 0
writes files (orbax writes the checkpoints together). Mistakes in starting the processes
fail in one line."""
import json
import os
import signal
import time

import numpy as np

from common import parallel
from helpers import COMPILATION_CACHE, BackgroundRun, free_port, tiny_config


STEPS = 6   # The session's tiny DDPM (trained_ddpm) is the 1-process run of STEPS steps.


def start_main(*args) -> BackgroundRun:
  """main.py on the tiny config in a process of its own, stderr into stdout."""
  env = dict(os.environ, HDD_COMPILATION_CACHE=COMPILATION_CACHE)
  return BackgroundRun(["main.py", "--config=tests/tiny_configs.py", *args], env,
                       merge_stderr=True)


def start_processes(workdir: str, data: str, *args, count: int = 2, each=None) -> list:
  """main.py as `count` processes of one run of STEPS steps (process k also given each[k])."""
  port = free_port()
  return [start_main(f"--workdir={workdir}", f"--config.data.path={data}",
                     f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={count}",
                     f"--process_id={k}", f"--config.train.num_steps={STEPS}", *args,
                     *(each[k] if each else ()))
          for k in range(count)]


def finish(processes: list) -> list:
  outputs = [p.output(timeout=600)[0] for p in processes]
  for process, output in zip(processes, outputs):
    assert process.returncode == 0, output[-3000:]
  return outputs


def final_params(workdir: str, data: str, num_steps: int):
  from hdd import checkpoints
  config = tiny_config(data)
  config.train.num_steps = num_steps
  return checkpoints.restore_params(config, workdir, ema=False)


def assert_same_params(a, b):
  import jax
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)


def test_two_processes_killed_and_restarted_train_what_one_process_trains(trained_ddpm,
                                                                         tmp_path):
  """Process 1 killed with SIGKILL mid-run, process 0 fails within seconds in one line (not
  a Gloo traceback and, a minute later, JAX's C++ abort); restarted, the two processes
  resume where they were and end on the 1-process run's parameters; only process 0 writes
  files, and the samples are gathered from both processes' halves."""
  data, single_dir = trained_ddpm
  workdir = str(tmp_path / "killed")
  # Checkpoints at every step; kill process 1 once step 2's checkpoint is complete.
  processes = start_processes(workdir, data, "--config.train.checkpoint_every=1",
                              "--config.sample.num_samples=0")
  checkpoint = os.path.join(workdir, "checkpoints", "2")
  deadline = time.time() + 300
  while not os.path.isdir(checkpoint) and time.time() < deadline:
    assert all(p.poll() is None for p in processes), processes[0].output()[0][-3000:]
    time.sleep(0.01)
  processes[1].send_signal(signal.SIGKILL)
  killed = time.time()
  output = processes[0].output(timeout=60)[0]
  assert time.time() - killed < parallel.STOP_GRACE_S + 5, output[-3000:]
  assert processes[0].returncode == 2, output[-3000:]
  assert output.splitlines()[-1] == ("error: process 1 of 2 stopped (its output says why); the "
                                     "last checkpoint is kept; restart every process to resume")
  assert "Traceback" not in output and "Fatal" not in output, output[-3000:]
  processes[1].wait()
  killed_at = max(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))
                  if s.isdigit())
  assert 2 <= killed_at < STEPS   # Killed mid-run.
  outputs = finish(start_processes(workdir, data, "--config.sample.num_samples=4"))
  assert "JAX process 0/2" in outputs[0] and "JAX process 1/2" in outputs[1]
  assert f"Resuming from the checkpoint at step {killed_at}" in outputs[0]
  assert_same_params(final_params(workdir, data, STEPS), final_params(single_dir, data, STEPS))
  samples = np.load(os.path.join(workdir, "samples", "samples.npz"))["images"]
  assert samples.shape == (4, 8, 8, 1)
  assert not [name for name in os.listdir(workdir) if ".tmp-" in name]
  assert "Done: train" in outputs[0] and "Done: train" not in outputs[1]


def test_two_processes_end_a_time_budget_at_the_same_step(stripes_npz, tmp_path):
  """Process 0's clock decides the end of a budget for both: they stop, checkpoint and
  finish together (each reading its own clock could leave one waiting in a collective)."""
  workdir = str(tmp_path / "budget")
  outputs = finish(start_processes(workdir, stripes_npz,
                                   "--config.train.time_budget_minutes=0.1",
                                   "--config.train.num_steps=1000000",
                                   "--config.sample.num_samples=0"))
  ends = [[line for line in output.splitlines() if "Trained steps 0-" in line]
          for output in outputs]
  assert all(len(found) == 1 for found in ends), outputs[0][-2000:]
  steps = [int(found[0].split("Trained steps 0-")[1].split()[0]) for found in ends]
  assert steps[0] == steps[1] >= 1   # (A loaded machine may spend the 6 s in a few steps.)
  with open(os.path.join(workdir, "train_timing.json")) as f:
    timing = json.load(f)
  assert timing["stopped_by"] == "budget" and timing["end_step"] == steps[0]
  assert timing["total_train_seconds"] >= 0.1 * 60


def test_mistakes_in_starting_processes_fail_in_one_line(stripes_npz, tmp_path):
  """Each process fails in one line that names the flag and the fix, where JAX raises a
  traceback (no coordinator), or waits 300 s then aborts in C++ (a process alone), or waits
  forever at the first checkpoint (two processes started for different runs). All at once,
  to keep this short; the flags refused before JAX starts are in test_processes.py."""
  workdir, other = str(tmp_path / "a"), str(tmp_path / "b")
  cases = [   # (flags, what the process's one error line says)
      (["--num_processes=2", "--process_id=0"],
       "--num_processes=2 needs --coordinator_address=HOST:PORT on every process"),
      ([f"--coordinator_address=127.0.0.1:{free_port()}", "--num_processes=2",
        "--process_id=1", "--join_timeout=3"],
       "process 1 of 2 did not meet all the processes at the coordinator 127.0.0.1:"),
  ]
  processes = [start_main(f"--workdir={workdir}", f"--config.data.path={stripes_npz}", *flags)
               for flags, _ in cases]
  # Another --workdir and num_steps for process 1: both processes fail alike.
  processes += start_processes(workdir, stripes_npz, each=[[], [
      f"--workdir={other}", f"--config.train.num_steps={STEPS + 1}"]])
  different = (f"process 1 of 2 was started for another run than process 0: --workdir={other}, "
               f"not {workdir}; --config.train.num_steps={STEPS + 1}, not {STEPS}: start "
               "every process with the same --workdir, --mode and --config flags")
  try:
    outputs = [process.output(timeout=120)[0] for process in processes]
  finally:   # None left waiting, should one hang.
    for process in processes:
      process.kill()
  for process, output, message in zip(processes, outputs,
                                      [message for _, message in cases] + [different] * 2):
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert process.returncode == 2 and len(errors) == 1 and message in errors[0], output[-3000:]
    assert "Traceback" not in output, output[-3000:]
  assert "within 3 s: start every process (--process_id=0..1)" in outputs[1]
  assert not os.path.exists(workdir) and not os.path.exists(other)   # Nothing written.
