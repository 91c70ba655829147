"""Thin Typer adapters: parse arguments, call the core, render. No logic lives here."""
