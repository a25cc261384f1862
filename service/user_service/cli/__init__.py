"""The ``user-service`` command (``main.py``): ``serve`` runs the server, the other subcommands
(``commands.py``) call it and print JSON lines (``output.py``)."""
