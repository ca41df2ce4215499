"""What the fork server of local workers imports before it forks any (see :mod:`tickets.executors.local`).

Ctrl-C is ignored first: the driver stops the workers itself, and a Ctrl-C during these
seconds of imports must not print a traceback from the server.
"""
import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)

import tickets.engine.netjob  # noqa: E402,F401 - torch and the job core, imported once for every worker
import tickets.training.loop  # noqa: E402,F401 - Lightning
