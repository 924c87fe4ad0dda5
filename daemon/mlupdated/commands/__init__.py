"""The command layer: one module per ``mlupdated`` sub-command.

Each module has ``run(args) -> int``: it reads the parsed command line, calls the
lower layers with typed arguments, and turns what they return into text. Only this
package (and ``cli``) prints or reads ``argparse.Namespace``. The workspace and the
default model are found by :mod:`.resolve`, the same way for every command.
"""
