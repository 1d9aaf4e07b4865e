"""The `bastion` command line: one module per command group."""
