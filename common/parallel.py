"""Data parallelism with `jax.jit` over a 1-D device mesh: the state is replicated, the
batch is split along its batch axis. The same code runs on 1 CPU, 8 GPUs, a TPU slice, or
several processes (hosts) joined by `initialize_processes`.

A multi-process run fails in one line instead of hanging or aborting: bad process flags
before anything starts, a process missing at the start after `join_timeout_s`, processes
started for different runs (`check_same_run`), and a process that stops mid-run within
STOP_GRACE_S on every other process (`watch_processes`)."""
from __future__ import annotations

import atexit
import json
import os
import socket
import sys
import threading
import time
from typing import Optional, Sequence

import jax
import numpy as np
from absl import logging
from jax._src import distributed  # JAX's own key-value store, as multihost_utils and orbax use it.
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from common.errors import UserError

DATA_AXIS = "data"
STOP_GRACE_S = 5.0   # How long a process that saw another stop waits for its own error first.
SAME_RUN_TIMEOUT_S = 600   # How long each process waits for the others' flags.
WATCH_CONNECT_TIMEOUT_S = 30   # For the watch's connections, made right after JAX's.
_WATCH_PORT_KEY = "hdd/watch_port"


def initialize_processes(coordinator_address: str = "", num_processes: int = 0,
                         process_id: int = -1, join_timeout_s: float = 300) -> None:
  """Joins a multi-process run before JAX computes anything: with the given coordinator
  (host:port of process 0), process count and this process's id, or, where these are
  unset, with what JAX reads from the environment (JAX_COORDINATOR_ADDRESS,
  JAX_NUM_PROCESSES, JAX_PROCESS_ID; SLURM, Open MPI, Cloud TPU pods and Kubernetes are
  detected). A single process (nothing given or found) does nothing. Processes on CPUs
  exchange gradients over Gloo. Bad values fail in one line before anything starts, and so
  does a process that has not met all the others within join_timeout_s (JAX would abort it
  with a C++ stack dump, or wait its own timeout first)."""
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
  num_processes = num_processes or int(os.environ.get("JAX_NUM_PROCESSES", "0"))
  if process_id < 0 and "JAX_PROCESS_ID" in os.environ:
    process_id = int(os.environ["JAX_PROCESS_ID"])
  if not coordinator_address and num_processes <= 1:
    return
  check_process_flags(coordinator_address, num_processes, process_id)
  if join_timeout_s <= 0:
    raise UserError(f"--join_timeout={join_timeout_s:g} must be > 0: the seconds each process "
                    "waits for all the others to start")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  timer = threading.Timer(join_timeout_s, exit_in_one_line, [join_timeout_message(
      coordinator_address, num_processes, process_id, join_timeout_s)])
  timer.daemon = True
  timer.start()
  try:   # JAX's own timeout is later: it ends the process in C++.
    jax.distributed.initialize(coordinator_address or None, num_processes or None,
                               None if process_id < 0 else process_id,
                               initialization_timeout=int(join_timeout_s) + 60)
  except ValueError as e:   # A value neither given nor set by a cluster's environment.
    raise UserError(missing_value_message(coordinator_address, num_processes, process_id, e)
                    ) from None
  finally:
    timer.cancel()
  watch_processes(split_address(distributed.global_state.coordinator_address)[0])


def check_process_flags(coordinator_address: str, num_processes: int, process_id: int) -> None:
  """Raises UserError for values JAX would meet with a traceback or an endless wait: an id
  out of range, an address that is not HOST:PORT or names no known host, and, on process 0,
  a port something else listens on."""
  if num_processes < 0:
    raise UserError(f"--num_processes={num_processes} must be >= 1: the number of processes "
                    "of the run, the same on every process")
  if process_id < -1 or 0 < num_processes <= process_id:
    raise UserError(f"--process_id={process_id} must lie in 0..{max(num_processes - 1, 0)}"
                    + (f" for --num_processes={num_processes}" if num_processes else "")
                    + ": a different id on every process, 0 on the host of "
                    "--coordinator_address")
  if not coordinator_address:
    return
  host, port = split_address(coordinator_address)
  fix = ("process 0's host name or IP address as every process reaches it, and a free port, "
         "e.g. --coordinator_address=10.0.0.1:12345")
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise UserError(f"--coordinator_address={coordinator_address!r} is not HOST:PORT: give {fix}")
  try:
    socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
  except (socket.gaierror, UnicodeError) as e:
    raise UserError(f"--coordinator_address={coordinator_address}: unknown host {host!r} "
                    f"({getattr(e, 'strerror', None) or e}): give {fix}") from None
  if process_id == 0 and "JAX_COORDINATOR_BIND_ADDRESS" not in os.environ:
    check_port_free(coordinator_address, int(port))


def split_address(address: str) -> tuple[str, str]:
  """(host, port) of HOST:PORT, the brackets of an IPv6 host removed ('' where missing)."""
  host, _, port = address.rpartition(":")
  return host.strip("[]"), port


def check_port_free(coordinator_address: str, port: int) -> None:
  """Process 0's coordinator listens on every address at `port` (JAX's default); binding
  it briefly here turns JAX's 'Failed to start RPC server' traceback into one line."""
  dual = socket.has_dualstack_ipv6()
  try:
    socket.create_server(("", port), family=socket.AF_INET6 if dual else socket.AF_INET,
                         dualstack_ipv6=dual).close()
  except OSError as e:
    reason = os.strerror(e.errno) if e.errno else e
    raise UserError(f"--coordinator_address={coordinator_address}: process 0 cannot listen on "
                    f"port {port} ({reason}): choose a free port, the same on every process"
                    ) from None


def join_timeout_message(coordinator_address: str, num_processes: int, process_id: int,
                         join_timeout_s: float) -> str:
  """What a process that met not all the others says, and what to check."""
  who = (f"process {process_id} of {num_processes}" if process_id >= 0 and num_processes
         else "this process")
  every = f" (--process_id=0..{num_processes - 1})" if num_processes else ""
  return (f"{who} did not meet all the processes at the coordinator "
          f"{coordinator_address or 'of the cluster'} within {join_timeout_s:g} s: start every "
          f"process{every}, with the same --coordinator_address and --num_processes "
          "(or raise --join_timeout)")


def missing_value_message(coordinator_address: str, num_processes: int, process_id: int,
                          error: Exception) -> str:
  """The flag JAX found no value for, named with what to give."""
  if not coordinator_address:
    return (f"--num_processes={num_processes} needs --coordinator_address=HOST:PORT on every "
            "process: process 0's host and a free port (or $JAX_COORDINATOR_ADDRESS, or a "
            "SLURM, Open MPI or TPU pod job that sets it)")
  if not num_processes:
    return ("--coordinator_address needs --num_processes=N, the number of processes, on every "
            "process (or $JAX_NUM_PROCESSES)")
  if process_id < 0:
    return (f"--num_processes={num_processes} needs --process_id=K, 0..{num_processes - 1} "
            "and different on every process (or $JAX_PROCESS_ID)")
  return f"the multi-process flags: {' '.join(str(error).split())}"


def exit_in_one_line(message: str) -> None:
  """`error: message` and exit 2, as main.py fails, from any thread: a thread cannot raise
  into the main one, which may be waiting inside JAX."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  leave_last()
  os._exit(2)


def check_same_run(workdir: str, mode: str, config_json: str) -> None:
  """Every process of a multi-process run must run the same --mode in the same --workdir
  with the same config: processes started otherwise wait on each other forever at the first
  checkpoint, or train different things. Each process's are compared with process 0's
  through JAX's key-value store (nothing compiles before the run sets its compilation
  cache), and every process fails with the same line naming what differs."""
  client = distributed.global_state.client
  if client is None:
    return
  count = distributed.global_state.num_processes
  mine = {"--workdir": os.path.abspath(workdir), "--mode": mode, "config": config_json}
  client.key_value_set(f"hdd/run/{distributed.global_state.process_id}", json.dumps(mine))
  runs = [json.loads(client.blocking_key_value_get(f"hdd/run/{k}", SAME_RUN_TIMEOUT_S * 1000))
          for k in range(count)]
  for k, run in enumerate(runs):
    if differences := run_differences(runs[0], run):
      raise UserError(f"process {k} of {count} was started for another run than process 0: "
                      f"{'; '.join(differences)}: start every process with the same "
                      "--workdir, --mode and --config flags")


def run_differences(first: dict, other: dict, most: int = 3) -> list:
  """`--flag=other's, not first's` for the flags and (at most `most`) config fields that
  differ between two processes' runs."""
  differences = [f"{flag}={other[flag]}, not {first[flag]}" for flag in ("--workdir", "--mode")
                 if other[flag] != first[flag]]
  a, b = flat_fields(json.loads(first["config"])), flat_fields(json.loads(other["config"]))
  fields = [key for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]
  differences += [f"--config.{key}={b.get(key)}, not {a.get(key)}" for key in fields[:most]]
  return differences


def flat_fields(config: dict, prefix: str = "") -> dict:
  """{'train.num_steps': 40, ...}: a nested config's leaves by dotted name."""
  fields = {}
  for key, value in config.items():
    if isinstance(value, dict):
      fields.update(flat_fields(value, f"{prefix}{key}."))
    else:
      fields[prefix + key] = value
  return fields


class _Watch:
  """What `watch_processes` shares between its threads: the open connection to each
  process watched, and whether a stop was heard or this process is leaving."""
  lock = threading.Lock()
  watching = False
  connections: dict = {}
  stopped = threading.Event()
  message = ""
  leaving = False


def watch_processes(coordinator_host: str) -> None:
  """A TCP connection from every process to process 0, so that a process that stops is
  noticed at once: JAX notices only by missed heartbeats (100 s), then aborts every other
  process in C++ with a stack dump (after a collective's Gloo traceback). The others wait
  STOP_GRACE_S for their own error (processes often fail alike), then fail in one line; a
  process that ends normally says goodbye first. Where a connection cannot be made (a
  firewall), JAX's heartbeat remains."""
  client, me = distributed.global_state.client, distributed.global_state.process_id
  try:
    if me == 0:
      dual = socket.has_dualstack_ipv6()
      with socket.create_server(("", 0), family=socket.AF_INET6 if dual else socket.AF_INET,
                                dualstack_ipv6=dual) as server:
        client.key_value_set(_WATCH_PORT_KEY, str(server.getsockname()[1]))
        server.settimeout(WATCH_CONNECT_TIMEOUT_S)
        for _ in range(distributed.global_state.num_processes - 1):
          connection = server.accept()[0]
          connection.settimeout(WATCH_CONNECT_TIMEOUT_S)
          lines = connection.makefile("r", encoding="ascii", errors="replace")
          follow_process(connection, lines, int(lines.readline()))
    else:
      port = int(client.blocking_key_value_get(_WATCH_PORT_KEY, WATCH_CONNECT_TIMEOUT_S * 1000))
      connection = socket.create_connection((coordinator_host, port), WATCH_CONNECT_TIMEOUT_S)
      connection.sendall(f"{me}\n".encode())
      follow_process(connection, connection.makefile("r", encoding="ascii", errors="replace"), 0)
  except (OSError, ValueError, RuntimeError) as e:   # RuntimeError: JAX's store timed out.
    logging.warning("Not every process is watched (%s): a stopped one is noticed by JAX's "
                    "heartbeat only.", e)
  atexit.register(say_goodbye)


def follow_process(connection: socket.socket, lines, process: int) -> None:
  """Reads another process's connection in a thread, until the goodbye of a normal end."""
  connection.settimeout(None)
  with _Watch.lock:
    _Watch.watching = True
    _Watch.connections[process] = connection
  threading.Thread(target=read_process, args=(connection, lines, process), daemon=True).start()


def read_process(connection: socket.socket, lines, process: int) -> None:
  """A stop process 0 relays is acted on with this connection still open (process 0 waits
  for its end); the connection's end without a goodbye is the stop of its process."""
  ended = True
  try:
    for line in lines:
      if line.strip() == "bye":
        ended = False
        break
      if line.startswith("stopped "):
        process_stopped(int(line.split()[1]))
  except (OSError, ValueError):
    pass
  with _Watch.lock:
    _Watch.connections.pop(process, None)
  connection.close()
  if ended:
    process_stopped(process)


def process_stopped(process: int) -> None:
  """Relays the stop to the processes this one watches, waits STOP_GRACE_S for this
  process's own error, then fails in one line (once, and not while leaving)."""
  with _Watch.lock:
    if _Watch.leaving or _Watch.stopped.is_set():
      return
    _Watch.message = (f"process {process} of {distributed.global_state.num_processes} stopped "
                      "(its output says why); the last checkpoint is kept; restart every "
                      "process to resume")
    _Watch.stopped.set()
    send_to_watched(f"stopped {process}")
  time.sleep(STOP_GRACE_S)
  exit_in_one_line(_Watch.message)


def send_to_watched(line: str) -> None:
  for connection in list(_Watch.connections.values()):
    try:
      connection.sendall(f"{line}\n".encode())
    except OSError:   # A process that has just ended.
      pass


def exit_if_another_process_stopped() -> None:
  """For an exception out of a run: a collective fails at once when another process stops;
  where the watch hears of such a stop within STOP_GRACE_S, fails in one line."""
  if _Watch.watching and _Watch.stopped.wait(STOP_GRACE_S):
    exit_in_one_line(_Watch.message)


def leave_last() -> None:
  """Before process 0 exits on an error: its end ends JAX's coordination service, which
  aborts every process still running with a C++ stack dump. So process 0 tells the others
  it stops and waits for their ends (at most STOP_GRACE_S + 2 s): each prints its own line."""
  with _Watch.lock:
    if distributed.global_state.process_id != 0 or not _Watch.connections:
      return
    _Watch.leaving = True
    send_to_watched("stopped 0")
  deadline = time.monotonic() + STOP_GRACE_S + 2
  while _Watch.connections and time.monotonic() < deadline:
    time.sleep(0.05)


def say_goodbye() -> None:
  """At a normal exit (atexit): the other processes no longer watch this one."""
  with _Watch.lock:
    _Watch.leaving = True
    send_to_watched("bye")


def is_main_process() -> bool:
  """Process 0 of a multi-process run (the only one of a single-process run): the one that
  writes files other than checkpoints and talks to the user."""
  return jax.process_index() == 0


def from_main_process(value: float) -> float:
  """Process 0's value of a host-side number on every process (a collective when there are
  several): for decisions every process must take alike, such as the end of a time budget."""
  if jax.process_count() == 1:
    return value
  from jax.experimental import multihost_utils
  return float(multihost_utils.broadcast_one_to_all(np.float32(value)))


def to_host(x) -> np.ndarray:
  """A global array as numpy on every process: its local value, or the pieces of all
  processes gathered (a batch split over several processes)."""
  if getattr(x, "is_fully_addressable", True):
    return np.asarray(jax.device_get(x))
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def create_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(*([None] * batch_axis), DATA_AXIS))


def shard_batch(batch, mesh: Mesh, batch_axis: int = 0):
  """Places this process's part of a global batch (numpy) on the mesh, split on batch_axis."""
  sharding = batch_sharded(mesh, batch_axis)

  def place(x):
    global_shape = list(x.shape)
    global_shape[batch_axis] *= jax.process_count()
    return jax.make_array_from_process_local_data(sharding, x, tuple(global_shape))

  return jax.tree_util.tree_map(place, batch)
