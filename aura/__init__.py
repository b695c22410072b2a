"""Aura core: process settings, the state layout shared by streams and serving, and the CLI."""
