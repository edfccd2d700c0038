"""Reports service: the programme overview on the web (public) and the quarterly report documents (keyed)."""
