"""The `mail-proxy` command: the composition root that wires core and components together."""
