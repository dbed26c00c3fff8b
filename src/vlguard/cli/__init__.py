"""The thin command-line layer: each command parses arguments and calls one library function."""
