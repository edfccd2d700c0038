"""The wire: what services share about each other (envelope, topics, event models, agency registry)."""
