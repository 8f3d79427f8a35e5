"""CLI commands of the runtime stage."""

import typer

app = typer.Typer()

from tastemap.runtime import interests_cli  # noqa: E402

app.add_typer(interests_cli.app)

from tastemap.runtime import embed_cli  # noqa: E402

app.add_typer(embed_cli.app)

from tastemap.runtime import recommend_cli  # noqa: E402

app.add_typer(recommend_cli.app)
