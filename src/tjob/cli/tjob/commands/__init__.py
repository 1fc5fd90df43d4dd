"""One module per ``tjob`` command, each with ``main(client, args) -> exit code``.

A command builds its request from the parsed arguments, makes the call and prints the answer
through :mod:`..render`. Only the module of the command given is imported.
"""
