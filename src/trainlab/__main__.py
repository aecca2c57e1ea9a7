"""``python -m trainlab`` runs the CLI (torchrun launches it this way)."""

from trainlab.cli import main

main()
