"""Tools run on a workstation to set up branch hardware (counter nodes)."""
