"""In-process stand-ins for external services the tests talk to over the network."""
