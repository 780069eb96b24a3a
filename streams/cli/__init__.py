"""The `touchpath` command line: one module per command group, wired by plain imports."""
