"""tests/forked_main.py ends a forked run as an interpreter ends: the same exit status,
output, atexit handlers and joined threads as `python SCRIPT` in a new interpreter (the
reference each case is compared with), though it skips tearing down the modules."""
import os
import textwrap

import pytest

import helpers
from helpers import run_python

ENDINGS = {
    "returns": "",
    "exits_with_a_number": "sys.exit(3)",
    "exits_with_a_message": "sys.exit('error: a message')",
    "raises": "raise ValueError('boom')",
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_a_forked_run_ends_as_a_new_interpreter_does(tmp_path, ending):
  """stdout, stderr and the exit status match; the atexit handler ran and the non-daemon
  thread finished its write before the process ended, in both."""
  assert helpers._forked_server().can_run(dict(os.environ))   # The forked path is tested.
  results = {}
  for fresh in (True, False):
    out = tmp_path / ("fresh" if fresh else "forked")
    out.mkdir()
    script = out / "script.py"
    script.write_text(textwrap.dedent(f"""\
        import atexit, sys, threading, time
        def late_write():
          time.sleep(0.3)
          open({str(out / 'thread')!r}, 'w').write('joined')
        atexit.register(lambda: open({str(out / 'atexit')!r}, 'w').write('ran'))
        threading.Thread(target=late_write).start()
        print('to stdout', end='')
        print('to stderr', file=sys.stderr)
        {ENDINGS[ending]}
        """))
    result = run_python([str(script)], dict(os.environ), timeout=120, fresh=fresh)
    assert (out / "atexit").read_text() == "ran" and (out / "thread").read_text() == "joined"
    results[fresh] = result
  fresh, forked = results[True], results[False]
  assert forked.returncode == fresh.returncode == {"returns": 0, "exits_with_a_number": 3}.get(
      ending, 1)
  assert forked.stdout == fresh.stdout == "to stdout"
  assert forked.stderr.splitlines()[0] == fresh.stderr.splitlines()[0] == "to stderr"
  assert forked.stderr.splitlines()[-1] == fresh.stderr.splitlines()[-1]
  if ending == "raises":
    assert "Traceback (most recent call last)" in forked.stderr
    assert forked.stderr.splitlines()[-1] == "ValueError: boom"
