"""Task payload kinds (command, call, pickle) and how each is run."""
