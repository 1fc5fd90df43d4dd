"""One module per ``tjob`` command, each with ``main(client, args) -> exit code``.

A command builds its request from the parsed arguments, makes the call and prints the answer
through :mod:`..render`. Only the module of the command given is imported. A command that
needs no connection (``context``, ``completion``) or makes its own (``version``) has
``standalone(args)`` instead; ``__complete``, the shells' helper, is :mod:`.complete`.
"""
