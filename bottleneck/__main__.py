"""``python -m bottleneck``."""

from bottleneck.cli import main

main()
