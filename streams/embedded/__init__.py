"""The embedded runner: a file or lines through the one intake path into a projection store, no servers."""
