"""``python -m tjob.cli.tjob``: the same as the ``tjob`` console script."""

from tjob.cli.tjob import main

main()
