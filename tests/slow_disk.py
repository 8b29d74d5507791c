"""`python tests/slow_disk.py SECONDS ARGS...`: lstmtext's CLI on a disk that pauses for SECONDS
before it makes each written checkpoint durable (fsync, then the rename), so that a test can kill
the process while a checkpoint is on its way and check that the previous one is kept."""

import os
import sys
import time

from lstmtext import cli


def main() -> None:
    pause = float(sys.argv.pop(1))
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        if ".tmp-" in os.readlink(f"/proc/self/fd/{fd}"):  # a checkpoint's temporary file
            time.sleep(pause)
        real_fsync(fd)

    os.fsync = slow_fsync
    cli.main()


if __name__ == "__main__":
    main()
