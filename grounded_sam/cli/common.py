"""What every ``grounded-sam`` command shares: exit codes, the usage error, argument types."""

from __future__ import annotations

import argparse
import os

DEBUG_ENV = "GROUNDED_SAM_DEBUG"
NO_MALLOC_TUNING_ENV = "GROUNDED_SAM_NO_MALLOC_TUNING"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_SKIPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_INCOMPLETE = 4

EXIT_CODES = """\
exit codes:
  0    success
  1    failure: missing model files, unreadable input, another run's results in OUT …
       (the message says what to do)
  2    usage error (bad option or argument)
  3    label/merge --fail-on-skip only: everything else was labelled, but some images
       could not be read (they are listed, and in OUT/errors.jsonl)
  4    merge only: some shards have not finished (the message says how many images each
       still lacks); run them again, they resume
  130  interrupted (Ctrl-C); `label` resumes when run again with the same arguments
"""

Formatter = argparse.RawDescriptionHelpFormatter  # keeps the hand-wrapped descriptions


class UsageError(Exception):
    """A combination of options argparse cannot check by itself (exit code 2)."""


def comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def unit(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_report_options(group: argparse._ActionsContainer) -> None:
    """The options that say how a labelling summary is reported (``label`` and ``merge``)."""
    group.add_argument(
        "--fail-on-skip",
        action="store_true",
        help="exit with code 3 when some images could not be read (default: exit 0, list them)",
    )
    group.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


FAST_HELP = (
    "optimised inference: SAM's encoder and decoder and Grounding DINO in bfloat16 on CPUs "
    "with AMX/AVX512-BF16, fused kernels (on GPUs: SAM's encoder in bf16/fp16); boxes and "
    "masks are close to, not equal to, the exact default (GROUNDED_SAM_FORCE_FP32=1 keeps "
    "float32). The same as --precision fast"
)
PRECISION_HELP = (
    "exact (default: the original models' float32 arithmetic); fast (the optimised paths in "
    "the dtype the hardware runs fastest: bf16 on CPUs with AMX/AVX512-BF16, else fp32); "
    "fast-fp32, fast-bf16, fast-fp16 (the optimised paths in that dtype); autocast-bf16, "
    "autocast-fp16 (SAM's own image encoder under torch.autocast). Part of a labelling "
    "run's configuration: a run resumes only with the same choice"
)


def add_precision_options(group: argparse._ActionsContainer, *, dtype: bool = False) -> None:
    """``--precision`` and its short form ``--fast`` (with ``dtype``: the older ``--dtype``,
    which :func:`precision_from_args` folds in)."""
    from grounded_sam.precision import PRECISIONS

    group.add_argument("--precision", choices=PRECISIONS, default=None, help=PRECISION_HELP)
    group.add_argument("--fast", action="store_true", help=FAST_HELP)
    if dtype:
        group.add_argument(
            "--dtype",
            default=None,
            choices=("fp32", "bf16", "fp16"),
            help="older spelling: with --fast, --precision fast-DTYPE; without, "
            "--precision autocast-DTYPE (fp32: exact)",
        )


def precision_from_args(args: argparse.Namespace) -> str:
    """The ``--precision`` the command line means: ``--precision`` itself, else ``--fast`` /
    ``--dtype`` spelled as one (``--fast --dtype bf16`` -> ``"fast-bf16"``).

    Raises:
        UsageError: ``--precision`` together with ``--fast`` or ``--dtype``.
    """
    dtype = getattr(args, "dtype", None)
    if args.precision is not None:
        if args.fast or dtype:
            raise UsageError("give --precision alone, without --fast or --dtype")
        return args.precision
    if args.fast:
        return f"fast-{dtype}" if dtype else "fast"
    return f"autocast-{dtype}" if dtype and dtype != "fp32" else "exact"


THREADS_HELP = (
    "CPU threads for the models (default: PyTorch's, one per core). On a machine shared "
    "with other work give the number of free cores: with 2 threads on a 2-core machine "
    "whose other core was busy, Grounding DINO (--fast) took 19.3 s against 5.6 s with 1"
)


def set_threads(n: int | None) -> None:
    """``torch.set_num_threads(n)`` for a program's ``main`` (None: leave PyTorch's default)."""
    if n is not None:
        import torch

        torch.set_num_threads(n)


_malloc_tuned = False  # process-wide: mallopt settings last until the process exits


def tune_malloc() -> bool:
    """Tune glibc malloc for this process (:func:`grounded_sam.runtime.tune_malloc`), once,
    unless ``GROUNDED_SAM_NO_MALLOC_TUNING`` is 1/true/yes/on. For a program's ``main`` only
    (the label command, the web app), never for a library call.

    Returns:
        Whether the process runs with the tuned settings (False: opted out, or not Linux/glibc).
    """
    global _malloc_tuned
    if os.environ.get(NO_MALLOC_TUNING_ENV, "").strip().lower() in {"1", "true", "yes", "on"}:
        return _malloc_tuned
    if not _malloc_tuned:
        from grounded_sam import runtime

        _malloc_tuned = runtime.tune_malloc()
    return _malloc_tuned


def malloc_note(program: str = "the command") -> str:
    """The ``--help`` paragraph on :func:`tune_malloc` for ``program`` (the command, the server)."""
    return (
        f"memory: on Linux {program} tunes glibc malloc when it starts, so that freed activation\n"
        "buffers are reused by the next layer instead of being returned to the system and\n"
        "faulted in again (measured 1.14x on SAM's encoder); the process then keeps its peak\n"
        f"memory until it exits. {NO_MALLOC_TUNING_ENV}=1 turns that off.\n"
    )
