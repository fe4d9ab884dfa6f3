"""The reward scorers behind HTTP, for teams who call them from another trainer."""
