"""The command line: ``sghost`` and its subcommands; a client of the running host's control socket."""
