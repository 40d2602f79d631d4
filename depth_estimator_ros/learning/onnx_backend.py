"""ONNX Runtime inference: export a depth model, check it against torch, run it, swap weights live.

The exported graph takes what the :class:`~depth_estimator_ros.learning.predictor.Predictor`
hands its torch model after the shared host-side resize: ``rgb`` ``(B, h, w, 3)`` uint8 at
the model's input size and ``focal`` ``(B,)`` float32 normalised focal lengths; it returns
``depth`` ``(B, 1, h, w)`` float32 metres. The uint8-to-float conversion, the ImageNet
normalisation and the camera scale are inside the graph, so both backends share every
step outside the network (resize, upsampling, range mask) as one code path.

Weights: the graph is exported without constant folding, so every floating parameter and
buffer of the model is an initializer named ``model.<state dict key>``. (The exporter
merges initializers of equal value, e.g. the identity batch norms of a folded encoder; the
export therefore gives every tensor a distinct offset first, and every session overrides
*all* of them with the real weights, :func:`OnnxSession`'s ``overrides``.) The weights are
written into the graph's initializers before the session is built, so onnxruntime's graph
optimisations (conv + batch-norm fusion, constant folding) see the real values; its
``SessionOptions.add_initializer`` overrides were measured to be ignored by those
optimisations (a 7 m error with ``ORT_ENABLE_ALL``, exact only with optimisations off).
The tensors online adaptation changes by default (the
decoder, ``LIVE_PREFIXES``) are graph *inputs* instead: a new weights version that only
touches them is a new set of arrays fed to the same session, ready at once. A version
that changes other tensors (``scope: all``) builds a new session with them written into
the graph, off the inference thread; the running session answers frames until the new
one replaces it between two frames.

Execution providers follow the device: CPU; CUDA, and TensorRT first when
``onnxruntime-gpu`` provides it (engines cached in ``trt_cache_dir``).
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from depth_estimator_ros import parameters
from depth_estimator_ros.atomic import write_bytes

__all__ = [
    "BACKENDS",
    "INPUT_NAMES",
    "OUTPUT_NAME",
    "ExportedModel",
    "OnnxSession",
    "cached_export",
    "export_onnx",
    "standalone_onnx",
    "onnxruntime_available",
    "providers_for",
    "state_arrays",
]

#: Values of the ``backend`` option (defined with the estimator's parameter of that name).
BACKENDS = parameters.BACKENDS
#: Graph inputs: uint8 ``(B, h, w, 3)`` RGB and float32 ``(B,)`` normalised focal lengths.
INPUT_NAMES = ("rgb", "focal")
#: Graph output: float32 ``(B, 1, h, w)`` depth in metres.
OUTPUT_NAME = "depth"
#: Largest accepted difference between the exported graph and torch on the export check, metres.
EXPORT_TOLERANCE_M = 1e-3
#: State dict prefixes of the tensors fed as graph inputs (swapped without a new session).
LIVE_PREFIXES = ("decoder.",)
_OPSET = 18
_PREFIX = "model."


def onnxruntime_available() -> bool:
    """Return whether ``onnxruntime`` imports."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class _Graph(nn.Module):
    """What the exported graph computes: uint8 NHWC in, metric depth out.

    The tensors named in ``live`` are taken from the extra ``forward`` arguments instead of
    the modules (traced as graph inputs). Only used on a private copy of a model.
    """

    def __init__(self, model: nn.Module, live: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.model = model
        self.slots = []
        for name in live:
            owner, _, attr = name.rpartition(".")
            module = model.get_submodule(owner)
            self.slots.append((module, attr, "_parameters" if attr in module._parameters else "_buffers"))

    def forward(self, rgb: Tensor, focal: Tensor, *live: Tensor) -> Tensor:
        for (module, attr, store), tensor in zip(self.slots, live):
            getattr(module, store)[attr] = tensor
        x = rgb.permute(0, 3, 1, 2).float() / 255.0
        return self.model.forward_unchecked(x, focal)


@dataclass(frozen=True)
class ExportedModel:
    """An exported graph and what its check measured.

    Attributes:
        data: the ``.onnx`` bytes (its inputs after ``rgb`` and ``focal`` name the tensors fed
            as inputs, :attr:`OnnxSession.live`).
        max_abs_diff_m: largest |onnxruntime - torch| on the check input, metres.
    """

    data: bytes
    max_abs_diff_m: float


def export_onnx(
    model: nn.Module, *, tolerance_m: float = EXPORT_TOLERANCE_M, seed: int = 0, live_weights: bool = True
) -> ExportedModel:
    """Export ``model`` for onnxruntime and check it numerically against torch.

    The batch dimension is dynamic, the spatial size is the model's input size (fixed: the
    Predictor always feeds that size, and a fixed shape lets onnxruntime plan its memory).

    Args:
        model: a ``DepthModel`` (left unchanged; a CPU copy is exported in eval mode).
        tolerance_m: largest accepted |onnxruntime - torch| on a random batch of two.
        seed: seed of the check input.
        live_weights: feed the decoder's weights as graph inputs (the estimator swaps
            them between frames); False gives a standalone graph whose only inputs are
            ``rgb`` and ``focal`` (:func:`standalone_onnx`).

    Returns:
        The :class:`ExportedModel`.

    Raises:
        ValueError: the architecture does not export, its graph disagrees with torch by
            more than ``tolerance_m``, or a weight is not a swappable initializer.
        ImportError: onnxruntime or onnx is not installed.
    """
    import onnx

    real = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items() if v.is_floating_point()}
    live = tuple(k for k in real if k.startswith(LIVE_PREFIXES)) if live_weights else ()
    graph = _Graph(copy.deepcopy(model).to("cpu").eval(), live).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # distinct values, so the exporter keeps one named initializer per tensor
        for index, tensor in enumerate(t for k, t in graph.model.state_dict().items() if k in real and k not in live):
            tensor.add_(1e-3 * (index + 1) + 1e-4 * torch.rand(tensor.shape, generator=generator))
    h, w = (int(v) for v in model.input_size)
    rgb = torch.randint(0, 256, (2, h, w, 3), dtype=torch.uint8, generator=generator)
    focal = torch.tensor([0.95, 1.2], dtype=torch.float32)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
            torch.onnx.export(
                graph, (rgb, focal, *(real[k] for k in live)), buffer, input_names=[*INPUT_NAMES, *live],
                output_names=[OUTPUT_NAME],
                opset_version=_OPSET, dynamic_axes={name: {0: "batch"} for name in (*INPUT_NAMES, OUTPUT_NAME)},
                do_constant_folding=False, dynamo=False,
            )  # fmt: skip
    except Exception as exc:  # the exporter raises many types for unsupported operators
        raise ValueError(f"{getattr(model, 'arch', type(model).__name__)} does not export to ONNX: "
                         f"{type(exc).__name__}: {exc}") from exc
    data = buffer.getvalue()
    proto = onnx.load_from_string(data)
    names = {init.name for init in proto.graph.initializer} | {i.name for i in proto.graph.input}
    missing = [k for k in real if (k if k in live else _PREFIX + k) not in names]
    if missing:
        raise ValueError(f"{len(missing)} weight(s) of {model.arch!r} are neither initializers nor inputs of the "
                         f"exported graph (e.g. {missing[:3]}); live weight swaps would miss them")
    return _checked(model, data, tolerance_m, seed)


def standalone_onnx(model: nn.Module, *, tolerance_m: float = EXPORT_TOLERANCE_M) -> ExportedModel:
    """Return a self-contained ``.onnx`` of ``model`` for onnxruntime / TensorRT users.

    Inputs ``rgb`` (``(B, H, W, 3)`` uint8 at the model's input size) and ``focal``
    (``(B,)`` float32 normalised focal length, ``sqrt(fx * fy / (W * H))`` of the
    original image); output ``depth`` (``(B, 1, H, W)`` float32 metres). Every weight is
    an initializer holding its real value; checked against torch without overrides.

    Raises:
        ValueError, ImportError: as :func:`export_onnx`.
    """
    exported = export_onnx(model, tolerance_m=tolerance_m, live_weights=False)
    data = _with_initializers(exported.data, state_arrays(model.state_dict()))
    checked = _checked(model, data, tolerance_m, overrides=False)
    return checked


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_export(model: nn.Module, checkpoint: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
                  ) -> tuple[ExportedModel, Path]:
    """Return the export of a checkpoint's model, reusing ``<stem>.<sha256[:16]>.onnx`` when present.

    The cache file sits next to the checkpoint, or in ``cache_dir`` (default
    ``~/.cache/depth_estimator_ros/onnx``) when that folder is not writable or is the
    installed package's own (the shipped checkpoint). A cached
    file that onnxruntime cannot load or that fails the numerical check is re-exported.

    Args:
        model: the model loaded from ``checkpoint``.
        checkpoint: its file (hashed: a changed file never reuses an old graph).
        cache_dir: fallback folder for the cache.

    Returns:
        ``(export, path of the cached .onnx)``.
    """
    from depth_estimator_ros.models.checkpoint import SHIPPED_CHECKPOINT

    checkpoint = Path(checkpoint)
    key = f"{checkpoint.stem}.{_file_digest(checkpoint)[:16]}.onnx"
    folders = [Path(cache_dir) if cache_dir else Path.home() / ".cache" / "depth_estimator_ros" / "onnx"]
    if checkpoint.resolve().parent != SHIPPED_CHECKPOINT.parent:  # never write into the installed package
        folders.insert(0, checkpoint.parent)
    for folder in folders:
        path = folder / key
        if path.is_file():
            try:
                return _checked(model, path.read_bytes()), path
            except (ValueError, RuntimeError):
                pass  # corrupt or stale: export again below
    exported = export_onnx(model)
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return exported, write_bytes(folder / key, exported.data)
        except OSError:
            continue
    raise OSError(f"no writable folder for the ONNX cache among {', '.join(map(str, folders))}")


def _graph_inputs(data: bytes) -> tuple[str, ...]:
    """Return the input names of a graph (RuntimeError when it is not one)."""
    import onnx

    try:
        return tuple(i.name for i in onnx.load_from_string(data).graph.input)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise RuntimeError(f"onnxruntime cannot load the ONNX graph (not an ONNX graph: {exc})") from exc


def _checked(
    model: nn.Module, data: bytes, tolerance_m: float = EXPORT_TOLERANCE_M, seed: int = 0, *, overrides: bool = True
) -> ExportedModel:
    """Run the graph with the model's weights against torch; return it with the measured difference.

    ``overrides=False`` runs the graph's own initializers (a standalone export).

    Raises:
        ValueError: the graph disagrees with torch by more than ``tolerance_m``.
        RuntimeError: onnxruntime cannot load the graph.
    """
    session = OnnxSession(data, device="cpu", threads=1, overrides=state_arrays(model.state_dict()) if overrides else None)
    h, w = (int(v) for v in model.input_size)
    rgb = torch.randint(0, 256, (2, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    focal = torch.tensor([0.95, 1.2], dtype=torch.float32)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.inference_mode():
        want = model.forward_unchecked(rgb.to(device).permute(0, 3, 1, 2).float() / 255.0, focal.to(device))
    model.train(was_training)
    diff = float(np.max(np.abs(session.run(rgb.numpy(), focal.numpy()) - want.cpu().numpy())))
    if not diff <= tolerance_m:
        raise ValueError(f"the ONNX graph of {getattr(model, 'arch', '?')!r} differs from torch by {diff:.3g} m "
                         f"(tolerance {tolerance_m:g} m); not used")
    return ExportedModel(data, diff)


def state_arrays(state: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
    """Return the floating tensors of a state dict as float32 numpy arrays (initializer overrides)."""
    # copies: a view would follow later in-place changes of the caller's tensors (a training copy)
    return {name: t.detach().to("cpu", torch.float32).numpy().copy() for name, t in state.items()
            if t.is_floating_point()}


def providers_for(device: str, trt_cache_dir: str | os.PathLike[str] | None = None) -> list[Any]:
    """Return the execution providers for a torch-style device name.

    ``cpu`` gives the CPU provider; ``cuda``/``cuda:N`` gives TensorRT (when available,
    with its engine cache in ``trt_cache_dir``), CUDA, then CPU.

    Raises:
        ValueError: CUDA asked for but onnxruntime has no CUDA provider (``onnxruntime-gpu``).
    """
    import onnxruntime as ort

    if not str(device).startswith("cuda"):
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise ValueError(f"device {device!r} needs onnxruntime-gpu (CUDAExecutionProvider); this onnxruntime "
                         f"has {available}")
    index = int(str(device).partition(":")[2] or 0)
    chosen: list[Any] = []
    if "TensorrtExecutionProvider" in available:
        options = {"device_id": index, "trt_fp16_enable": True}
        if trt_cache_dir is not None:
            Path(trt_cache_dir).mkdir(parents=True, exist_ok=True)
            options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(trt_cache_dir))
        chosen.append(("TensorrtExecutionProvider", options))
    chosen += [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return chosen


def _with_initializers(data: bytes, arrays: Mapping[str, np.ndarray]) -> bytes:
    """Return the graph ``data`` with the initializers ``model.<name>`` set to ``arrays[name]``."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(data)
    for init in graph.graph.initializer:
        name = init.name[len(_PREFIX):] if init.name.startswith(_PREFIX) else None
        if name in arrays:
            init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arrays[name], np.float32), init.name))
    return graph.SerializeToString()


class OnnxSession:
    """An onnxruntime session of an exported depth graph, with initializer overrides.

    Args:
        data: the ``.onnx`` bytes (:attr:`ExportedModel.data`).
        overrides: the model's floating state dict as arrays (:func:`state_arrays`); an
            exported graph's own initializer values are offsets, not weights, so a session
            for prediction gets all of them.
        device: ``"cpu"`` or ``"cuda[:N]"`` (see :func:`providers_for`).
        threads: intra-op threads (0 = onnxruntime's choice).
        trt_cache_dir: TensorRT engine cache folder (CUDA only).

    Raises:
        RuntimeError: onnxruntime cannot load the graph (a corrupt file).
    """

    def __init__(
        self,
        data: bytes,
        *,
        device: str = "cpu",
        threads: int = 0,
        overrides: Mapping[str, np.ndarray] | None = None,
        trt_cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        self._data = data
        self._device = str(device)
        self._threads = int(threads)
        self._trt_cache_dir = trt_cache_dir
        self.overrides: dict[str, np.ndarray] = dict(overrides or {})
        #: state dict keys fed as graph inputs (the decoder), in input order
        self.live = _graph_inputs(data)[len(INPUT_NAMES):]
        missing = [name for name in self.live if name not in self.overrides]
        if missing:
            raise ValueError(f"the graph takes {len(missing)} weight(s) as inputs that overrides lack: {missing[:3]}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            fixed = {k: v for k, v in self.overrides.items() if k not in set(self.live)}
            graph = _with_initializers(data, fixed) if fixed else data
            self._session = ort.InferenceSession(graph, options, providers=providers_for(self._device, trt_cache_dir))
        except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
            raise RuntimeError(f"onnxruntime cannot load the ONNX graph: {type(exc).__name__}: {exc}") from exc
        self.providers = self._session.get_providers()

    def run(self, rgb: np.ndarray, focal: np.ndarray) -> np.ndarray:
        """Return ``(B, 1, h, w)`` float32 depth for uint8 ``(B, h, w, 3)`` RGB and ``(B,)`` focal lengths."""
        feeds = {INPUT_NAMES[0]: np.ascontiguousarray(rgb, dtype=np.uint8),
                 INPUT_NAMES[1]: np.ascontiguousarray(focal, dtype=np.float32)}
        feeds.update((name, self.overrides[name]) for name in self.live)
        return self._session.run([OUTPUT_NAME], feeds)[0]

    def with_weights(self, state: Mapping[str, Tensor]) -> "OnnxSession":
        """Return a session of the same graph with ``state``'s tensors in force.

        Earlier overrides stay unless ``state`` replaces them, so a partial state dict
        (a payload of the decoder) keeps the rest of the weights in force. When ``state``
        only holds input-fed tensors (:attr:`live`) the onnxruntime session is shared and
        this is immediate; otherwise a new session is built, which takes tens of
        milliseconds: call it off the inference thread.
        """
        changed = state_arrays(state)
        arrays = {**self.overrides, **{k: np.ascontiguousarray(v) for k, v in changed.items()}}
        live = set(self.live)
        fixed_changed = [k for k, v in changed.items()
                         if k not in live and not (k in self.overrides and np.array_equal(v, self.overrides[k]))]
        if not fixed_changed:  # only input-fed tensors changed: the same session, new arrays
            twin = copy.copy(self)
            twin.overrides = arrays
            return twin
        return OnnxSession(self._data, device=self._device, threads=self._threads, overrides=arrays,
                           trt_cache_dir=self._trt_cache_dir)
