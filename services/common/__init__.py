"""Shared infrastructure of the services: no business rules live here."""
