"""The ``distill3d`` command. Modules here import only click and the standard library at top level,
so that ``distill3d --help`` stays fast; each command imports what it needs when it runs."""
