"""CLI commands of the runtime stage: each module parses arguments and calls the library."""

import typer

from tastemap.runtime.cli import embed, interests, model, recommend

app = typer.Typer()
app.add_typer(interests.app)
app.add_typer(embed.app)
app.add_typer(recommend.app)
app.add_typer(model.app)
