"""Labelling on Ray (``auto_label(..., engine="ray")``, ``grounded-sam label --engine ray``).

The driver lists the images, records the configuration and decides what is pending exactly as
the local engine does (:mod:`~.run`); Ray Data then reads and decodes the pending images in
tasks and feeds them to a pool of actors, each of which builds the pipeline once and runs
:func:`~.run.label_and_record` on every image it gets: the per-image exports and the state
record land in the shared output folder, the same files the local engine writes. The driver
builds the exports from those records with the same code (:func:`~.outputs.build_outputs`).

What Ray brings: actors on any node of a cluster (``ray_address``), CPUs and GPUs per actor,
back-pressure between reading and labelling, and retries: an actor that dies is restarted and
its unfinished images are labelled again. An image done twice writes the same files again
(atomic renames, one record per image), so no annotation is ever duplicated.

Only this module imports Ray, and only when a Ray run starts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grounded_sam.autolabel.sources import ImageItem
from grounded_sam.errors import GroundedSamError

INSTALL_HINT = (
    'engine="ray" (`--engine ray`) needs Ray Data, which is not installed. Install it with '
    '`pip install "grounded-sam[ray]"` (or `pip install "ray[data]"`), or label without '
    'Ray: engine="local" (the default), or shards (`--shard K/N`, docs/DISTRIBUTED.md).'
)


class RayNotInstalledError(GroundedSamError, ImportError):
    """``engine="ray"`` without Ray installed; the message says how to install it."""


class PipelineMismatchError(GroundedSamError, RuntimeError):
    """An actor built a pipeline whose configuration differs from the one the run records."""


def import_ray() -> Any:
    """``ray``, with Ray Data loaded; :class:`RayNotInstalledError` when it is missing."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayNotInstalledError(INSTALL_HINT) from exc
    return ray


def build_pipeline(recipe: Callable[[], Any]) -> Any:
    """The one place a Ray worker gets its pipeline: ``recipe()`` (a function of no
    arguments, e.g. ``functools.partial(gs.Pipeline.from_registry, sam="vit_b")``)."""
    pipeline = recipe()
    if not callable(getattr(pipeline, "config", None)):
        raise TypeError(
            f"the pipeline recipe returned {type(pipeline).__name__}, not a pipeline (an object "
            "with __call__(image, prompt, classes=...) and config())"
        )
    return pipeline


def _set_threads(num_cpus: float) -> None:
    """Torch threads = the CPUs Ray reserved for this worker (at least one)."""
    import torch

    torch.set_num_threads(max(1, int(num_cpus)))


def _describe(recipe: Callable[[], Any], num_cpus: float) -> dict[str, Any]:
    """``pipeline.config()`` of the pipeline a worker builds (run as a Ray task)."""
    _set_threads(num_cpus)
    return build_pipeline(recipe).config()


def _decode_row(row: dict[str, Any]) -> dict[str, Any]:
    """A Ray Data read task: decode one image with the local engine's
    :func:`~.prefetch.decode`. ``image``: RGB uint8 (H, W, 3); (0, 0, 3) when it could not
    be read, ``reason`` then saying why (``""`` otherwise)."""
    import numpy as np

    from grounded_sam.autolabel.prefetch import decode

    image, reason = decode(_item(row))
    if image is None:
        image = np.zeros((0, 0, 3), np.uint8)
    return {**row, "image": image, "reason": reason or ""}


def _item(row: dict[str, Any]) -> ImageItem:
    return ImageItem(Path(row["path"]), row["file_name"], row["refused"] or None)


class LabelActor:
    """One worker of the pool: builds the pipeline once (:func:`build_pipeline`), checks that
    it has the configuration the run recorded, then labels batches of decoded images with
    :func:`~.run.label_and_record`. Returns per image ``file_name``, ``status`` and
    ``reason`` (``""`` when it was labelled)."""

    def __init__(
        self,
        recipe: Callable[[], Any],
        *,
        num_cpus: float,
        run_config: dict[str, Any],
        fingerprint: str,
        state: str,
        exports: dict[str, Any],
    ) -> None:
        from grounded_sam.autolabel.outputs import Exports
        from grounded_sam.autolabel.run import describe_run
        from grounded_sam.autolabel.state import fingerprint as fingerprint_of

        _set_threads(num_cpus)
        self.pipeline = build_pipeline(recipe)
        mine = describe_run(
            self.pipeline.config(), prompt=run_config["prompt"], classes=run_config["classes"]
        )
        if fingerprint_of(mine) != fingerprint:
            raise PipelineMismatchError(
                "a Ray actor built a pipeline with another configuration than the run records "
                f"(this node: {mine['pipeline']}; recorded: {run_config['pipeline']}). Nodes "
                "must build the same models with the same settings: use the same package "
                "versions and checkpoints everywhere, and one kind of device and CPU."
            )
        self.prompt, self.classes = run_config["prompt"], run_config["classes"]
        self.fingerprint = fingerprint
        self.state = Path(state)
        self.exports = Exports(**exports)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        from grounded_sam.autolabel.run import label_and_record

        out: dict[str, list[str]] = {"file_name": [], "status": [], "reason": []}
        clear_cache = getattr(getattr(self.pipeline, "segmenter", None), "clear_cache", None)
        for j in range(len(batch["file_name"])):
            row = {k: batch[k][j] for k in ("path", "file_name", "refused")}
            reason = str(batch["reason"][j]) or None
            image = None if reason is not None else batch["image"][j]
            record = label_and_record(
                self.pipeline,
                _item(row),
                image,
                reason,
                prompt=self.prompt,
                classes=self.classes,
                state=self.state,
                config=self.fingerprint,
                exports=self.exports,
            )
            if callable(clear_cache):
                clear_cache()  # no image comes twice: free memory
            out["file_name"].append(record["file_name"])
            out["status"].append(record["status"])
            out["reason"].append(record.get("reason", ""))
        return out


class RayRun:
    """A labelling run on a Ray cluster: :meth:`start` connects (or starts a local Ray),
    :meth:`describe` gives the pipeline's configuration, :meth:`label` labels, :meth:`close`
    shuts down a Ray that :meth:`start` started."""

    def __init__(
        self,
        ray: Any,
        recipe: Callable[[], Any],
        *,
        actors: int,
        num_cpus_per_actor: float,
        num_gpus_per_actor: float,
        started: bool,
    ) -> None:
        self.ray, self.recipe = ray, recipe
        self.actors = actors
        self.num_cpus = num_cpus_per_actor
        self.num_gpus = num_gpus_per_actor
        self.started = started

    @classmethod
    def start(
        cls,
        recipe: Callable[[], Any],
        *,
        address: str | None = None,
        actors: int = 1,
        num_cpus_per_actor: float = 1.0,
        num_gpus_per_actor: float = 0.0,
    ) -> RayRun:
        """Connect to the Ray cluster at ``address`` (``"auto"``: the one ``ray start`` runs
        on this machine; ``"ray://host:10001"``: a remote one) or, with ``None``, to the Ray
        this process already runs, else start a local one.

        Args:
            recipe: a function of no arguments that builds the pipeline; it is pickled to
                the workers (``functools.partial(gs.Pipeline.from_registry, ...)``).
            actors: how many actors label at once (each holds its own models).
            num_cpus_per_actor / num_gpus_per_actor: what Ray reserves for each actor; the
                actor's torch threads are its CPUs. Fractions share a GPU (e.g. 0.5).
        """
        from grounded_sam.validation import check_int

        actors = check_int("actors", actors, low=1)
        if not num_cpus_per_actor > 0 or num_gpus_per_actor < 0:
            raise ValueError(
                f"num_cpus_per_actor must be > 0 and num_gpus_per_actor >= 0, got "
                f"{num_cpus_per_actor} and {num_gpus_per_actor}"
            )
        if not callable(recipe) or callable(getattr(recipe, "config", None)):
            raise TypeError(
                'engine="ray" builds the pipeline in every actor: pass a function of no '
                "arguments that builds it, e.g. functools.partial(gs.Pipeline.from_registry, "
                'sam="vit_b", detector="grounding-dino-tiny"), not a built pipeline'
            )
        ray = import_ray()
        started = not ray.is_initialized()
        if started and address is None:  # a new local Ray (or $RAY_ADDRESS's cluster)
            ray.init(log_to_driver=False, include_dashboard=False)
        elif started:  # only the address: Ray Client (ray://) refuses start-up options
            ray.init(address=address)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the driver shows its own, as the local engine
        context.print_on_execution_start = False
        return cls(
            ray,
            recipe,
            actors=actors,
            num_cpus_per_actor=float(num_cpus_per_actor),
            num_gpus_per_actor=float(num_gpus_per_actor),
            started=started,
        )

    def _resources(self) -> dict[str, float]:
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}

    def describe(self) -> dict[str, Any]:
        """``pipeline.config()`` as a worker with an actor's resources builds it (one Ray
        task: the driver needs no GPU and loads no model)."""
        task = self.ray.remote(**self._resources())(_describe)
        return self.ray.get(task.remote(self.recipe, self.num_cpus))

    def label(
        self,
        pending: Sequence[ImageItem],
        *,
        run_config: dict[str, Any],
        fingerprint: str,
        state: Path,
        exports: dict[str, Any],
        progress: bool,
        done: int,
        total: int,
    ) -> None:
        """Label ``pending`` on the actor pool; the records land in ``state``. ``exports``:
        the keyword arguments of :class:`~.outputs.Exports` (every actor builds its own).
        ``done`` of ``total`` were finished before (the progress bar starts there)."""
        from tqdm.auto import tqdm

        if not pending:
            return
        rows = [
            {"path": str(it.path), "file_name": it.file_name, "refused": it.refused or ""}
            for it in pending
        ]
        # one block per image: a killed actor loses (and redoes) only the image it held
        ds = self.ray.data.from_items(rows, override_num_blocks=len(rows))
        # reading is light next to labelling: it reserves no CPU, so that actors holding
        # every CPU of a machine are still fed; two readers per actor keep them busy (without
        # a bound, Ray starts a worker process per zero-CPU task: 16 on 2 cores, measured)
        ds = ds.map(
            _decode_row,
            num_cpus=0,
            compute=self.ray.data.TaskPoolStrategy(size=2 * self.actors),
        )
        ds = ds.map_batches(
            LabelActor,
            fn_constructor_kwargs={
                "recipe": self.recipe,
                "num_cpus": self.num_cpus,
                "run_config": run_config,
                "fingerprint": fingerprint,
                "state": str(state),
                "exports": exports,
            },
            batch_size=1,
            batch_format="numpy",
            compute=self.ray.data.ActorPoolStrategy(size=self.actors),
            **self._resources(),
        )
        bar = tqdm(total=total, initial=done, unit="img", desc="labelling", disable=not progress)
        try:
            for row in ds.iter_rows():
                if row["status"] == "error" and progress:
                    bar.write(f"skipped {row['file_name']}: {row['reason']}", file=sys.stderr)
                bar.update(1)
        finally:
            bar.close()

    def close(self) -> None:
        """Shut down the Ray that :meth:`start` started (a cluster it joined stays up)."""
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
