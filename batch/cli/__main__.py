"""``python -m batch.cli``: what the tests and the demo scripts run."""

from batch.cli import main

main()
