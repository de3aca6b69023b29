"""Command-line commands, one module per area; each exposes ``register(app)``.

Commands are thin: each calls one library function that a notebook could call too.
Heavy libraries are imported inside the command functions so ``crystalloop --help`` stays fast.
"""
