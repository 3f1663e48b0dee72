"""The ``urbangen`` command.

Subcommands live next to the code they drive (``urbangen/<area>/cli.py``) and are imported only when
invoked, so ``urbangen --help`` stays fast and a missing optional extra only breaks its own command.
"""

from __future__ import annotations

import importlib

import click

from urbangen import __version__
from urbangen.errors import UrbangenError

# command name -> "module:attribute" of a click command, or a nested mapping for a group of subcommands
COMMANDS: dict[str, str | dict[str, str]] = {
    "world": "urbangen.world.cli:world",
    "data": {
        "index": "urbangen.datasets.cli:index",
        "standardize": "urbangen.datasets.cli:standardize",
        "show": "urbangen.datasets.cli:show",
        "push": "urbangen.storage_cli:push",
        "pull": "urbangen.storage_cli:pull",
        "ls": "urbangen.storage_cli:ls",
    },
    "train": "urbangen.segment.cli:train",
    "predict": "urbangen.segment.cli:predict",
    "pseudo-label": "urbangen.segment.cli:pseudo_label",
    "evaluate": "urbangen.segment.cli:evaluate",
    "fda": "urbangen.baselines.cli:fda",
    "adapt": "urbangen.diffusion.cli:adapt",
    "sample": "urbangen.diffusion.cli:sample",
    "generate": "urbangen.generate.cli:generate",
    "filter-rectify": "urbangen.generate.cli:filter_rectify",
    "export": "urbangen.export.cli:export",
    "serve": "urbangen.export.cli:serve",
    "pipeline": "urbangen.pipeline_cli:pipeline",
    "demo": "urbangen.demo:demo_command",
}

HELP = {
    "world": "Procedural low-effort urban scenes (sim and real-style renders).",
    "data": "Index, standardise, preview, push and pull datasets.",
    "train": "Train a segmentation model.",
    "predict": "Run a segmentation model over images.",
    "pseudo-label": "Write confidence-thresholded pseudo-labels for unlabelled images.",
    "evaluate": "Score trainId predictions against ground truth (official Cityscapes semantics).",
    "fda": "Fourier Domain Adaptation baseline: translate a source dataset.",
    "adapt": "Two-stage diffusion fine-tuning on target images and pseudo-labels.",
    "sample": "Render trainId label maps into images with an adapted generator.",
    "generate": "Sharded, resumable generation of candidates (and merge of shards).",
    "filter-rectify": "MCOC filtering and label rectification of generated candidates.",
    "export": "Export a generator to ONNX or TensorRT.",
    "serve": "Serve a generator over KServe's V1/V2 protocols.",
    "pipeline": "Compile, run locally or submit the Kubeflow pipeline.",
    "demo": "Run the whole method on the built-in benchmark (the README's main command).",
}


def _load(target: str) -> click.Command:
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise click.ClickException(
            f"this command needs {exc.name!r}, which is not installed (pip install 'urbangen[all]')"
        ) from exc
    return getattr(module, attr)


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args, lazy: dict[str, str | dict[str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        target = self.lazy.get(name)
        if target is None:
            return None
        if isinstance(target, dict):
            command = LazyGroup(name=name, lazy=target, help=HELP.get(name))
        else:
            command = _load(target)
        self.commands[name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help without importing every subcommand module.
        rows = [(name, HELP.get(name, "")) for name in self.list_commands(ctx) if name not in self.commands]
        rows += [(name, cmd.get_short_help_str(60)) for name, cmd in sorted(self.commands.items())]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(sorted(rows))


class RootGroup(LazyGroup):
    """Turns :class:`UrbangenError` (bad input, bad config) into a one-line message and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UrbangenError as exc:
            error = click.ClickException(str(exc))
            error.exit_code = 2
            raise error from None


@click.group(cls=RootGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="urbangen")
def main() -> None:
    """urbangen: adapt a diffusion model to a real target domain and turn synthetic label maps into
    target-looking segmentation training data, then prove it with a segmenter's mIoU."""


if __name__ == "__main__":
    main()
