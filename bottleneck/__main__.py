"""``python -m bottleneck``."""

from bottleneck_transfer.cli import main

main()
