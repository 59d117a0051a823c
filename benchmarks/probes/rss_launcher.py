"""Run a command and write its peak RSS (wait4's ru_maxrss, KiB) to a file: ``python -S rss_launcher.py OUT CMD...``.

Linux carries the peak RSS of the process that forked a child across exec, so a child spawned
directly by a large benchmark script would report at least that script's own size; the command
must be forked by a small process instead: this launcher, under ``python -S``, about 10 MiB
(measured as the floor).
"""

import os
import signal
import sys

out, cmd = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
_, status, usage = os.wait4(pid, 0)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
with open(out, "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
