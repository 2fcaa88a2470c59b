"""`python -m selfmae.quiet_kernel -f CONNECTION_FILE`: the IPython kernel, minus one log line.

ipykernel warns "Kernel is running over TCP without encryption" at every start. Papermill starts one kernel per
notebook on this machine's loopback, so `make reproduce` printed it thirteen times, burying the lines that matter.
This launcher drops that one record (a logging filter matching its text); every other kernel message and all
notebook output are untouched. `selfmae.runner` uses it when the kernel spec runs `ipykernel_launcher`.
"""
from __future__ import annotations

import logging

TCP_WARNING = "Kernel is running over TCP without encryption"


class DropTcpWarning(logging.Filter):
    """Drops the log record whose message starts with TCP_WARNING; passes every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(TCP_WARNING)


def main() -> None:
    """Install the filter on ipykernel's application logger, then run the kernel as ipykernel_launcher does."""
    logging.getLogger("IPKernelApp").addFilter(DropTcpWarning())
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
