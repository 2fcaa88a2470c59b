"""`python -m selfmae.quiet_kernel -f CONNECTION_FILE`: the IPython kernel, minus two routine log lines.

Papermill starts one kernel per notebook, and each printed two lines that say nothing is wrong, burying the lines that
matter in `make reproduce`'s output:
* "Kernel is running over TCP without encryption" (a WARNING at every start; the kernel listens on this machine's
  loopback);
* "KeyboardInterrupt caught in kernel." (an ERROR at every end: jupyter_client's `shutdown_kernel` sends the kernel
  SIGINT before its shutdown request, and ipykernel logs the interrupt it catches between messages; an interrupt
  while a cell runs is the cell's own traceback, not this line).
This launcher drops those two records (a logging filter matching their text); every other kernel message and all
notebook output are untouched. `selfmae.runner` uses it when the kernel spec runs `ipykernel_launcher`.
"""
from __future__ import annotations

import logging

TCP_WARNING = "Kernel is running over TCP without encryption"
SHUTDOWN_INTERRUPT = "KeyboardInterrupt caught in kernel"
ROUTINE_LINES = (TCP_WARNING, SHUTDOWN_INTERRUPT)


class DropRoutineLines(logging.Filter):
    """Drops the log records whose message starts with one of ROUTINE_LINES; passes every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(ROUTINE_LINES)


def main() -> None:
    """Install the filter on ipykernel's application logger, then run the kernel as ipykernel_launcher does."""
    logging.getLogger("IPKernelApp").addFilter(DropRoutineLines())
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
