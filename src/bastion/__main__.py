"""`python -m bastion` runs the command line."""

from bastion.cli.main import main

main()
