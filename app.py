"""grounded-sam web demo: text prompt -> boxes -> SAM masks, clicks -> a mask, everything mode.

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--tiny-random] [--sam vit_b]
                  [--no-download] [--device cpu|cuda] [--models-dir DIR] [--precision fast|...]

Uploads are files, decoded once by ``grounded_sam.service.read_upload`` (``gs.load_image``
after a size check and a format allow-list read from the content). Each request is bounded
by ``service.Limits`` (``GROUNDED_SAM_WEB_*`` variables, printed at start) before any model
runs; a refused request is one line in the log and its reason on the page / in the API's
error. See docs/API.md and SECURITY.md.

The page and its API are only a front: every model call goes through
``grounded_sam.service`` (models built lazily, once, shared; each request's data its own).
API endpoints (callable with ``gradio_client``; JSON answers): ``/detect_segment``,
``/segment_points``, ``/everything``, ``/models``. See docs/API.md.
"""

import argparse
import atexit
import functools
import html
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402

from grounded_sam import service, viz  # noqa: E402

HERE = Path(__file__).resolve().parent
EXAMPLES_DIR = HERE / "assets" / "examples"
EXAMPLES = [("shapes.png", "ball . box . triangle"), ("fruit.png", "orange . apple . plate")]
DETECTOR_LABELS = {
    "Grounding DINO": service.GROUNDING_DINO,
    "CLIP over automatic masks": service.CLIP,
}
CLICK_MODES = {
    "Foreground point": "foreground",
    "Background point": "background",
    "Box (two clicks)": "box",
}
log = logging.getLogger("grounded_sam.app")


def _detector_kind(value: str) -> str:
    """The API and the page both accept the kind (``"clip"``) or the page's label."""
    kind = DETECTOR_LABELS.get(value, value)
    if kind not in service.DETECTOR_KINDS:
        raise ValueError(f"unknown detector {value!r}; use one of {list(service.DETECTOR_KINDS)}")
    return kind


def image_file(gr: Any, **kwargs: Any) -> Any:
    """A ``gr.Image`` (``type="filepath"``) that hands the handler the uploaded file untouched.

    Gradio's own preprocessing opens every upload with PIL (all plugins) before the handler
    runs; this one does not, so :func:`service.read_upload` is the only decoder and refuses
    formats outside its allow-list before any PIL plugin sees the file. (Overridden on the
    instance: a subclass would make Gradio write a ``.pyi`` stub next to this file.)
    """
    component = gr.Image(type="filepath", **kwargs)

    def preprocess(payload: Any) -> str | None:
        if payload is None:
            return None
        if payload.path is None:
            raise gr.Error("Send the image as a file upload.", print_exception=False)
        return str(payload.path)

    component.preprocess = preprocess
    return component


def guarded(fn: Any, *, endpoint: str, page: bool) -> Any:
    """``fn`` with every failure turned into a ``gr.Error`` carrying a readable reason.

    Refusals (bad input, limits, missing models) are one line in the log; anything else is a
    bug and is logged with its traceback. The page renders error messages as HTML, so its
    messages are escaped; API answers carry the plain text (``gradio_client``'s ``AppError``).
    """
    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001 - every failure gets a message, bugs a traceback
            if service.is_refusal(e, own_files=[__file__]):
                message = service.one_line(e)
                log.warning("refused %s: %s", endpoint, message)
            else:
                log.exception("bug in %s", endpoint)
                message = f"internal error ({type(e).__name__}); the server log has the details"
            text = html.escape(message) if page else message
            raise gr.Error(text, duration=None, print_exception=False) from None

    return wrapper


def build_demo(
    manager: service.ModelManager,
    *,
    default_sam: str | None = None,
    limits: service.Limits = service.DEFAULT_LIMITS,
) -> Any:
    """The Blocks of the page and the API for ``manager``'s models (nothing is loaded yet).

    Every request is bounded by ``limits`` (checked before any model runs); at most
    ``limits.concurrency`` text/click requests and one everything-mode request run at once.
    """
    import gradio as gr

    tracker = gr.Progress()  # gradio passes each request its own tracker in its place
    tmp_root = Path(tempfile.mkdtemp(prefix="grounded-sam-app-"))  # per-request download dirs
    atexit.register(shutil.rmtree, tmp_root, ignore_errors=True)
    sam_choices = manager.sam_names
    default_sam = default_sam if default_sam in sam_choices else sam_choices[0]
    amg = manager.default_amg_options

    def request_dir() -> Path:
        return Path(tempfile.mkdtemp(dir=tmp_root))

    def need_image(path: str | None) -> np.ndarray:
        """The uploaded file, decoded once (``gs.load_image``) within the limits."""
        if path is None:
            raise ValueError("Upload an image (or pick an example) first.")
        return service.read_upload(path, limits)

    # ------------------------------------------------------------------ page handlers
    def on_text(image, prompt, detector, sam, box_t, text_t, clip_t, progress=tracker):
        name, image = service.upload_name(image), need_image(image)
        dets, classes = service.detect_segment(
            manager,
            image,
            prompt,
            detector=_detector_kind(detector),
            sam=sam,
            box_threshold=box_t,
            text_threshold=text_t,
            clip_threshold=clip_t,
            progress=progress,
            limits=limits,
        )
        files = service.export_result(dets, classes, request_dir(), file_name=name)
        return viz.annotate(image, dets), service.table_rows(dets), [str(p) for p in files]

    def on_everything(image, sam, pps, iou, stability, min_area, progress=tracker):
        name, image = service.upload_name(image), need_image(image)
        dets = service.everything(
            manager,
            image,
            sam=sam,
            progress=progress,
            limits=limits,
            points_per_side=pps,
            pred_iou_thresh=iou,
            stability_score_thresh=stability,
            min_mask_region_area=min_area,
        )
        files = service.export_result(dets, [], request_dir(), file_name=name)
        return (
            viz.annotate(image, dets, labels=False),
            service.table_rows(dets),
            [str(p) for p in files],
        )

    def click_view(image: np.ndarray, state: service.ClickState, dets: Any = None) -> np.ndarray:
        scene = viz.annotate(image, dets, labels=False) if dets is not None else image
        if state.box is not None:
            from grounded_sam.types import Detections

            box = Detections(
                xyxy=np.array([state.box], np.float32),
                scores=[1.0],
                phrases=["box"],
                class_id=[0],
                image_size=image.shape[:2],
            )
            scene = viz.BoxAnnotator().annotate(scene, box)
        points = list(state.points) + ([state.corner] if state.corner else [])
        labels = list(state.labels) + ([1] if state.corner else [])
        if points:
            scene = viz.PointAnnotator().annotate(scene, points, labels)
        return scene

    def on_new_image(image):
        state = service.ClickState()
        return (None if image is None else need_image(image)), state, [], None

    def on_click(image, state, mode, sam, evt: gr.SelectData, progress=tracker):
        name, image = service.upload_name(image), need_image(image)
        progress(0.1, desc="Segmenting (SAM loads on first use)")
        x, y = (float(v) for v in evt.index)
        state = state.click(x, y, CLICK_MODES.get(mode, mode))
        if not state.ready:  # the first corner of a box
            return click_view(image, state), state, [], None
        dets, logits = service.segment_points(
            manager,
            image,
            state.points,
            state.labels,
            state.box,
            mask_input=state.logits,
            sam=sam,
            limits=limits,
        )
        state = state.with_logits(logits)
        files = service.export_result(dets, ["object"], request_dir(), file_name=name)
        return (
            click_view(image, state, dets),
            state,
            service.table_rows(dets),
            [str(p) for p in files],
        )

    # ------------------------------------------------------------------ API handlers
    def api_detect_segment(
        image, prompt, detector, sam, box_threshold, text_threshold, clip_threshold
    ):
        image = need_image(image)
        dets, classes = service.detect_segment(
            manager,
            image,
            prompt,
            detector=_detector_kind(detector),
            sam=sam or None,
            box_threshold=box_threshold,
            text_threshold=text_threshold,
            clip_threshold=clip_threshold,
            limits=limits,
        )
        return service.result_json(dets, classes, random_weights=manager.tiny_random)

    def api_segment_points(image, points, labels, box, sam):
        image = need_image(image)
        dets, _ = service.segment_points(
            manager, image, points, labels, box, sam=sam or None, limits=limits
        )
        return service.result_json(dets, ["object"], random_weights=manager.tiny_random)

    def api_everything(image, options, sam):
        image = need_image(image)
        opts = service.check_amg_options(options, limits)
        dets = service.everything(manager, image, sam=sam or None, limits=limits, **opts)
        return service.result_json(dets, [], random_weights=manager.tiny_random)

    def api_models():
        return {
            "random_weights": manager.tiny_random,
            "fast": manager.fast,
            "precision": manager.precision.name,
            "sam": manager.sam_names,
            "detectors": list(service.DETECTOR_KINDS),
            "loaded": manager.loaded(),
            "models": [
                {
                    "name": s.name,
                    "role": s.role,
                    "present": s.present,
                    "missing": list(s.files),
                    "command": None if s.present else s.command,
                }
                for s in manager.status()
            ],
        }

    # ------------------------------------------------------------------ layout
    statuses = manager.status()
    banner = service.status_markdown(manager, statuses)
    title = "grounded-sam" + (" — RANDOM WEIGHTS" if manager.tiny_random else "")
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# grounded-sam\nText prompt → boxes (Grounding DINO, or CLIP over SAM's automatic "
            "masks) → SAM masks. Or click points / a box, or segment everything."
        )
        gr.Markdown(banner, visible=bool(banner), elem_id="model-status")
        click_state = gr.State(service.ClickState())
        with gr.Row():
            with gr.Column(scale=1):
                image = image_file(
                    gr,
                    label="Image",
                    sources=["upload", "clipboard"],
                    elem_id="input-image",
                )
                sam = gr.Dropdown(sam_choices, value=default_sam, label="SAM model")
            with gr.Column(scale=2), gr.Tabs():
                with gr.Tab("Text prompt", id="text"):
                    prompt = gr.Textbox(
                        label="Prompt (classes separated by ' . ')",
                        placeholder="cat . dog",
                        elem_id="prompt",
                    )
                    detector = gr.Radio(
                        list(DETECTOR_LABELS), value="Grounding DINO", label="Detector"
                    )
                    with gr.Accordion("Thresholds", open=False):
                        box_t = gr.Slider(0, 1, 0.35, step=0.01, label="Box threshold (DINO)")
                        text_t = gr.Slider(0, 1, 0.25, step=0.01, label="Text threshold (DINO)")
                        clip_t = gr.Slider(0, 1, 0.3, step=0.01, label="CLIP class probability")
                    run_text = gr.Button("Detect and segment", variant="primary", elem_id="run")
                    text_out = gr.Image(
                        label="Result", format="png", interactive=False, elem_id="result-image"
                    )
                    text_table = gr.Dataframe(
                        headers=service.TABLE_HEADERS,
                        label="Detections",
                        interactive=False,
                        elem_id="result-table",
                    )
                    text_files = gr.File(
                        label="Download: COCO JSON and PNG masks",
                        file_count="multiple",
                        elem_id="result-files",
                    )
                with gr.Tab("Click", id="click"):
                    gr.Markdown(
                        "Click the image: foreground / background points, or two corners of a "
                        "box. Each click refines the mask (the previous mask is SAM's input)."
                    )
                    mode = gr.Radio(list(CLICK_MODES), value="Foreground point", label="Click")
                    clear = gr.Button("Clear clicks")
                    click_image = gr.Image(
                        label="Click here",
                        type="numpy",
                        format="png",
                        interactive=False,
                        elem_id="click-image",
                    )
                    click_table = gr.Dataframe(
                        headers=service.TABLE_HEADERS,
                        label="Mask",
                        interactive=False,
                        elem_id="click-table",
                    )
                    click_files = gr.File(label="Download", file_count="multiple")
                with gr.Tab("Everything", id="everything"):
                    pps = gr.Slider(
                        2,
                        max(2, limits.max_points_per_side),
                        min(amg["points_per_side"], limits.max_points_per_side),
                        step=1,
                        label="Points per side",
                    )
                    iou = gr.Slider(
                        0, 1, amg["pred_iou_thresh"], step=0.01, label="Predicted IoU ≥"
                    )
                    stab = gr.Slider(
                        0, 1, amg["stability_score_thresh"], step=0.01, label="Stability score ≥"
                    )
                    min_area = gr.Slider(0, 5000, 0, step=10, label="Min region area (px)")
                    run_all = gr.Button("Segment everything", variant="primary")
                    all_out = gr.Image(label="Result", format="png", interactive=False)
                    all_table = gr.Dataframe(
                        headers=service.TABLE_HEADERS, label="Masks", interactive=False
                    )
                    all_files = gr.File(label="Download", file_count="multiple")
        gr.Examples(
            [[str(EXAMPLES_DIR / f), p] for f, p in EXAMPLES if (EXAMPLES_DIR / f).exists()],
            inputs=[image, prompt],
            label="Examples",
        )

        private = {"api_visibility": "private"}
        # One pool for model requests, one slot for everything mode (the heaviest): a big
        # request holds one slot while small ones run in the others.
        models = {"concurrency_id": "models", "concurrency_limit": limits.concurrency}
        heavy = {"concurrency_id": "everything", "concurrency_limit": 1}
        on_text = guarded(on_text, endpoint="page text", page=True)
        on_everything = guarded(on_everything, endpoint="page everything", page=True)
        on_click = guarded(on_click, endpoint="page click", page=True)
        on_new_image = guarded(on_new_image, endpoint="page upload", page=True)
        run_text.click(
            on_text,
            [image, prompt, detector, sam, box_t, text_t, clip_t],
            [text_out, text_table, text_files],
            **private,
            **models,
        )
        prompt.submit(
            on_text,
            [image, prompt, detector, sam, box_t, text_t, clip_t],
            [text_out, text_table, text_files],
            **private,
            **models,
        )
        run_all.click(
            on_everything,
            [image, sam, pps, iou, stab, min_area],
            [all_out, all_table, all_files],
            **private,
            **heavy,
        )
        image.change(
            on_new_image, [image], [click_image, click_state, click_table, click_files], **private
        )
        sam.change(  # the previous mask's logits belong to the previous SAM
            on_new_image, [image], [click_image, click_state, click_table, click_files], **private
        )
        clear.click(
            on_new_image, [image], [click_image, click_state, click_table, click_files], **private
        )
        click_image.select(
            on_click,
            [image, click_state, mode, sam],
            [click_image, click_state, click_table, click_files],
            **private,
            **models,
        )

        # API-only endpoints: hidden inputs, JSON out
        with gr.Column(visible=False):
            a_image = image_file(gr, label="image")
            a_prompt = gr.Textbox(label="prompt", value="")
            a_detector = gr.Textbox(label="detector", value=service.GROUNDING_DINO)
            a_sam = gr.Textbox(label="sam", value=default_sam)
            a_box = gr.Number(label="box_threshold", value=0.35)
            a_text = gr.Number(label="text_threshold", value=0.25)
            a_clip = gr.Number(label="clip_threshold", value=0.3)
            a_points = gr.JSON(label="points", value=[])
            a_labels = gr.JSON(label="labels", value=[])
            a_xyxy = gr.JSON(label="box", value=[])
            a_options = gr.JSON(label="options", value={})
            a_out = gr.JSON(label="result")
            a_button = gr.Button()
        a_button.click(
            guarded(api_detect_segment, endpoint="/detect_segment", page=False),
            [a_image, a_prompt, a_detector, a_sam, a_box, a_text, a_clip],
            a_out,
            api_name="detect_segment",
            **models,
        )
        a_button.click(
            guarded(api_segment_points, endpoint="/segment_points", page=False),
            [a_image, a_points, a_labels, a_xyxy, a_sam],
            a_out,
            api_name="segment_points",
            **models,
        )
        a_button.click(
            guarded(api_everything, endpoint="/everything", page=False),
            [a_image, a_options, a_sam],
            a_out,
            api_name="everything",
            **heavy,
        )
        a_button.click(
            guarded(api_models, endpoint="/models", page=False), None, a_out, api_name="models"
        )
    demo.grounded_sam_tmp = tmp_root  # type: ignore[attr-defined]
    return demo


def startup_downloads(sam: str, grounding_dino: str) -> list[str]:
    """Registry names the page fetches on start: the chosen SAM and the chosen Grounding DINO
    when that is a registry name (a folder or a .pth path is the user's own file)."""
    from grounded_sam.models.registry import REGISTRY

    names = [sam if sam.startswith(("sam_", "sam2")) else f"sam_{sam}"]
    if grounding_dino in REGISTRY:
        names.append(grounding_dino)
    return names


def ensure_default_models(
    sam: str, models_dir: str | None = None, grounding_dino: str = "grounding_dino_tiny"
) -> None:
    """Fetch the chosen checkpoints (announced, with progress, sha256-checked) if missing.

    Offline or failing downloads are reported and the page starts anyway; it names what is
    missing and the command that fetches it.
    """
    from grounded_sam.models.download import ensure_models

    names = startup_downloads(sam, grounding_dino)
    try:
        ensure_models(names, download=True, models_dir=models_dir)
    except Exception as e:  # noqa: BLE001 - any failure must still let the page start
        print(f"warning: could not fetch the default models: {e}", file=sys.stderr)
        try:  # name every file that is still missing, not only the first that failed
            ensure_models(names, download=False, models_dir=models_dir)
        except Exception as missing:  # noqa: BLE001
            print(str(missing), file=sys.stderr)
        print("the page starts anyway and shows what is missing", file=sys.stderr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from grounded_sam.cli.common import THREADS_HELP, add_precision_options, malloc_note, positive

    p = argparse.ArgumentParser(
        description="grounded-sam web demo: text prompt -> boxes -> SAM masks (and an API).",
        epilog=malloc_note("the server"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="also create a public gradio.live link")
    p.add_argument(
        "--tiny-random",
        action="store_true",
        help="tiny untrained models (no checkpoints; outputs are meaningless) to try the page",
    )
    p.add_argument(
        "--sam",
        default="vit_b",
        help="default SAM model: vit_b, vit_l, vit_h or SAM 2.1 (sam2.1_hiera_tiny, _small, "
        "_base_plus, _large)",
    )
    p.add_argument(
        "--grounding-dino",
        default="grounding_dino_tiny",
        metavar="NAME|PATH",
        help="Grounding DINO: a registry name, a model folder or an original .pth "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--no-download",
        action="store_true",
        help="do not fetch missing checkpoints on start (the page says what is missing)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: CUDA if any)")
    p.add_argument("--models-dir", default=None, help="checkpoint folder (default: ./models)")
    add_precision_options(p)
    p.add_argument("--threads", type=positive, metavar="N", help=THREADS_HELP)
    return p.parse_args(argv)


def build_manager(args: argparse.Namespace) -> service.ModelManager:
    """The page's model manager for the command line ``args`` (models load on first use)."""
    from grounded_sam.cli.common import precision_from_args
    from grounded_sam.models.registry import SAM_CHOICES

    sam_names = [args.sam] + [n for n in SAM_CHOICES if n != args.sam]
    return service.ModelManager(
        tiny_random=args.tiny_random,
        device=args.device,
        models_dir=args.models_dir,
        sam_names=sam_names,
        grounding_dino=args.grounding_dino,
        precision=precision_from_args(args),
    )


def main(argv: list[str] | None = None) -> None:
    from grounded_sam.cli.common import set_threads, tune_malloc

    args = parse_args(argv)
    tune_malloc()  # process-wide, before any model loads; GROUNDED_SAM_NO_MALLOC_TUNING=1: off
    set_threads(args.threads)
    if not args.tiny_random and not args.no_download:
        ensure_default_models(args.sam, args.models_dir, args.grounding_dino)
    handler = logging.StreamHandler()  # our lines only; other libraries keep their settings
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    limits = service.Limits.from_env()
    log.info("request limits (GROUNDED_SAM_WEB_<NAME> to change): %s", limits.summary())
    manager = build_manager(args)
    demo = build_demo(manager, default_sam=args.sam, limits=limits)
    demo.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size).launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        ssr_mode=False,
        max_file_size=limits.max_upload_bytes,
        show_error=True,  # errors raised by gradio itself (a path not uploaded) keep their text
    )


if __name__ == "__main__":
    main()
