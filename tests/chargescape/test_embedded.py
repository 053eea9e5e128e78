"""The embedded-services runner's bookkeeping: the last runner out stops the servers."""

import json
import os
import subprocess
import sys

from chargescape.embedded import Holders


def test_last_holder_out_stops_and_dead_holders_are_pruned(tmp_path):
    holders = Holders(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        holders.path.write_text(json.dumps([dead.pid, alive.pid]))
        holders.join()
        assert json.loads(holders.path.read_text()) == [alive.pid, os.getpid()]
        assert holders.leave() is False  # another runner still uses the servers
    finally:
        alive.kill()
        alive.wait()
    holders.join()
    assert holders.leave() is True  # only dead holders left: stop the servers
