"""The process flags of a multi-process run (common.parallel.check_process_flags): values
JAX meets with a traceback or an endless wait are refused in one line before JAX starts.
Runs of several processes are in test_distributed.py."""
import socket

import pytest

from common import parallel
from common.errors import UserError


@pytest.mark.parametrize("address,count,process,message", [
    ("127.0.0.1:1234", 2, 5, "--process_id=5 must lie in 0..1 for --num_processes=2: a "
     "different id on every process"),
    ("127.0.0.1:1234", -2, 0, "--num_processes=-2 must be >= 1"),
    ("not-a-host", 2, 0, "--coordinator_address='not-a-host' is not HOST:PORT: give process 0's "
     "host name or IP address"),
    ("127.0.0.1:http", 2, 1, "--coordinator_address='127.0.0.1:http' is not HOST:PORT"),
    ("127.0.0.1:70000", 2, 1, "--coordinator_address='127.0.0.1:70000' is not HOST:PORT"),
    ("no-such-host.invalid:1234", 2, 1, "--coordinator_address=no-such-host.invalid:1234: "
     "unknown host 'no-such-host.invalid'"),
])
def test_bad_process_flags_are_one_line(address, count, process, message):
  with pytest.raises(UserError) as error:
    parallel.check_process_flags(address, count, process)
  assert message in str(error.value) and "\n" not in str(error.value)


def test_a_port_in_use_is_refused_on_process_0_only():
  """JAX's coordinator listens on every address at the port: something listening on it
  (here on 127.0.0.1) stops process 0, whose JAX would raise 'Failed to start RPC server'."""
  with socket.create_server(("127.0.0.1", 0)) as taken:
    port = taken.getsockname()[1]
    with pytest.raises(UserError, match=f"process 0 cannot listen on port {port} \\(Address "
                       "already in use\\): choose a free port"):
      parallel.check_process_flags(f"127.0.0.1:{port}", 2, 0)
    parallel.check_process_flags(f"127.0.0.1:{port}", 2, 1)   # Others only connect to it.
  parallel.check_process_flags(f"localhost:{port}", 2, 0)   # Free again.
  parallel.check_process_flags(f"[::1]:{port}", 2, 1)


def test_a_join_timeout_of_0_is_refused_before_jax_starts():
  with pytest.raises(UserError, match="--join_timeout=0 must be > 0"):
    parallel.initialize_processes("127.0.0.1:1234", 2, 1, join_timeout_s=0)
