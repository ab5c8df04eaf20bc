"""``python -m bottleneck_transfer``: the ``bottleneck`` command."""

from bottleneck_transfer.cli import main

main()
