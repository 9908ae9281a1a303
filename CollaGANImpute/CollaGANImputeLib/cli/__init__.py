"""The `collagan-impute` command line: one module per command, all calling the library functions the Slicer module calls."""
