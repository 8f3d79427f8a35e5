"""The ``tastemap`` command: one sub-app per stage (export, runtime, bench)."""

import typer

from tastemap.bench.cli import app as bench_app
from tastemap.console import set_debug, setup_logging
from tastemap.export.cli import app as export_app
from tastemap.runtime.cli import app as runtime_app

app = typer.Typer(
    name="tastemap",
    help="Layered user-interest models from interaction logs with an exported ONNX BERT encoder.\n\n"
    "Example: tastemap demo",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # help texts hold literal brackets ("[default: ...]", "tastemap[export]")
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(export_app)
app.add_typer(runtime_app)
app.add_typer(bench_app, name="bench")


@app.callback()
def configure(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs."),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an unexpected error."),
) -> None:
    """Layered user-interest models from interaction logs with an exported ONNX BERT encoder."""
    setup_logging(verbose)
    set_debug(debug)


def main() -> None:
    app()
