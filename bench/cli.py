"""CLI commands of the bench stage."""

import typer

app = typer.Typer()
