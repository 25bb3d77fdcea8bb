"""Run a command and write its own wall time and peak RSS to a file: `python peak_rss.py OUT CMD [ARGS...]`.

A child's peak RSS (`ru_maxrss` from wait4) starts at the RSS of the process that forked it (Linux folds the old
address space's high-water mark into it at exec), so a benchmark that forks its commands directly reports its own
size as theirs whenever it is the larger. This small process forks the command instead: the floor is its own few MB.
Writes "<wall seconds> <peak KB>" to OUT and exits with the command's exit code.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: the command itself
        try:
            os.execvp(argv[0], argv)  # noqa: S606 (the command as given, no shell)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    with open(out, "w", encoding="utf-8") as figures:
        figures.write(f"{wall} {usage.ru_maxrss}\n")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
