"""Segmentation engines by name, each a callable case -> labels: the C++ runtime at a precision, LiteMedSAM
through the same runtime, the plain OpenVINO-Python loop, the torch reference (imported lazily; it needs the
export extra), or the model-free box fill."""

from __future__ import annotations

from pathlib import Path

from .errors import ModelError, UsageError
from .user_cache import cache_root

__all__ = ["ENGINES", "RuntimeEngine", "compile_cache", "make_engine"]

ENGINES = ("runtime-auto", "runtime-f32", "runtime-bf16", "runtime-bf16-encoder", "runtime-int8", "litemedsam-auto",
           "litemedsam-f32", "litemedsam-bf16", "litemedsam-bf16-encoder", "ov-python", "ov-python-f32", "torch",
           "box-fill")


class RuntimeEngine:
    """The C++ runtime as an engine; keeps the last call's stage times (`Trace.seconds`) and the networks' own
    times for profiles."""

    def __init__(self, segmenter) -> None:
        self.segmenter = segmenter
        self.stage_seconds: dict[str, float] = {}
        self._network_seconds: dict[str, float] | None = None

    def network_seconds(self) -> dict[str, float]:
        """The networks' own inference times (`Segmenter.network_seconds`), measured on the first call only."""
        if self._network_seconds is None:
            self._network_seconds = self.segmenter.network_seconds()
        return self._network_seconds

    @property
    def precision(self) -> str:
        return self.segmenter.precision

    def __call__(self, case):
        labels, trace = self.segmenter.segment(case, return_trace=True)
        self.stage_seconds = trace.seconds
        return labels


def box_fill_engine(case):
    from .reference import box_fill

    return box_fill(case.imgs.shape, case.boxes, case.is_3d)


def litemedsam_model_dir(folder: Path | None) -> Path:
    """`folder`, else the bundled LiteMedSAM, else LiteMedSAM exported by the teacher tooling into the cache
    (see litemedsam_weights)."""
    from .bundled import bundled_model_dir
    from .litemedsam_weights import default_path, ir_folder

    folder = folder or bundled_model_dir("litemedsam") or ir_folder(default_path())
    if not (folder / "encoder.xml").is_file():
        raise UsageError(f"the litemedsam engines need a LiteMedSAM model folder ({folder} has none): "
                         "`repmedsam-ov train get-teacher`, then `repmedsam-ov export "
                         f"{default_path()} -o {folder}`, or pass --litemedsam DIR.")
    return folder


def compile_cache(option: str | None = None) -> str | None:
    """The runtime's OpenVINO compiled-model cache for the CLI: `option` (a folder, or "none"), else
    $REPMEDSAM_COMPILE_CACHE (the same), else ~/.cache/repmedsam-ov/openvino. A later process then loads the
    compiled networks (~0.06 s each here) instead of compiling them again (~0.3 s each). None = off, also where
    the default folder cannot be created (a read-only home): the cache only saves start-up time."""
    import logging
    import os

    chosen = option or os.environ.get("REPMEDSAM_COMPILE_CACHE")
    if chosen:
        return None if chosen.lower() == "none" else chosen
    folder = cache_root() / "openvino"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        logging.getLogger("repmedsam_ov").debug("no compiled-model cache (%s: %s)", folder, e)
        return None
    return str(folder) if os.access(folder, os.W_OK) else None


def make_engine(name: str, model_dir: Path | None, checkpoint: str | None, threads: int | None,
                litemedsam_dir: Path | None = None, streams: int | None = None, cache_dir: str | None = None):
    """name (one of ENGINES, or runtime-auto) -> a callable case -> segs, for the CLI (errors name its -m
    option); model_dir None = the bundled model; streams and cache_dir: the runtime's (None = auto, no cache).
    Raises UsageError or ModelError."""
    if name == "box-fill":
        return box_fill_engine
    if name.startswith("litemedsam-"):
        from .segmenter import Segmenter

        folder = litemedsam_model_dir(litemedsam_dir)
        return RuntimeEngine(Segmenter(folder, precision=name.split("-", 1)[1], threads=threads, streams=streams,
                                       cache_dir=cache_dir))
    if name.startswith(("runtime-", "ov-python")):
        from .segmenter import resolve_model_dir

        model_dir = resolve_model_dir(model_dir, how="-m MODEL_DIR")
    if name.startswith("runtime-"):
        from .segmenter import Segmenter

        return RuntimeEngine(Segmenter(model_dir, precision=name.split("-", 1)[1], threads=threads, streams=streams,
                                       cache_dir=cache_dir))
    if name.startswith("ov-python"):
        from .baseline import OVPythonLoop

        import openvino as ov

        default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()
        precision = "f32" if name.endswith("-f32") else default
        return OVPythonLoop(model_dir, precision, threads).segment
    if name == "torch":
        if not checkpoint:  # the bundled model's own weights (model.json), where this is a source checkout
            from .bundled import resolve_model_dir, torch_checkpoint

            checkpoint = str(torch_checkpoint(resolve_model_dir(model_dir, how="-m MODEL_DIR")))
        try:
            from repmedsam_export.pipeline import reference_segmenter
        except ImportError as e:
            raise ModelError(f"the torch engine needs the export extra ({e.name} is missing): "
                             "pip install 'repmedsam-ov[export]'") from None
        return reference_segmenter(checkpoint, threads)
    raise UsageError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}.")
