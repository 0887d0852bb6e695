"""A CPU-time stack sampler for toolbridge's serving process (``python -m bench.profile``).

On ``PYTHONPATH`` with ``BENCH_SAMPLES`` set, Python imports this at start; in ``python -m
app`` it waits for SIGUSR1, then records the Python stack every time the process has used
another tick of CPU (``ITIMER_PROF``: user and system time, so waits are never sampled and a
system call counts for the frame that made it), until SIGUSR2 writes the counts to the file
``BENCH_SAMPLES`` names. Unlike ``cProfile``, it adds nothing to each call, so C-heavy code
is not under-weighted; unlike ``py-spy``, it cannot mistake a wait for work."""

import os
import pickle
import signal
import sys
from collections import Counter
from types import FrameType

if os.environ.get("BENCH_SAMPLES") and sys.orig_argv[-2:] == ["-m", "app"]:
    _stacks: Counter[tuple[tuple[str, int, str], ...]] = Counter()

    def _sample(signum: int, frame: FrameType | None) -> None:
        stack = []
        while frame is not None:
            code = frame.f_code
            stack.append((code.co_filename, code.co_firstlineno, code.co_name))
            frame = frame.f_back
        _stacks[tuple(stack)] += 1

    def _start(signum: int, frame: FrameType | None) -> None:
        _stacks.clear()
        signal.signal(signal.SIGPROF, _sample)
        signal.setitimer(signal.ITIMER_PROF, 0.001, 0.001)  # the kernel's tick is the floor

    def _stop(signum: int, frame: FrameType | None) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        with open(os.environ["BENCH_SAMPLES"], "wb") as out:
            pickle.dump(dict(_stacks), out)

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
