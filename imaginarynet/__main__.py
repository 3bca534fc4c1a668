"""`python -m imaginarynet ...` is the same as the `imaginarynet` command."""
from imaginarynet.cli import main

main()
