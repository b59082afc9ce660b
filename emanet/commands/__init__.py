"""Subcommands of the `emanet` command: one module each, with `configure(parser)` and
`run(args) -> int`. Modules import heavy dependencies inside `run`, so `emanet --help` is fast."""
