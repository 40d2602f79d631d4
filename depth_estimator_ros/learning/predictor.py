"""The inference wrapper: RGB image in, metric depth at the image's own size out.

Used by the estimator node and the prequential evaluator. A :class:`Predictor` owns a
private copy of the model in eval mode and never trains it; a trainer thread hands in
new weights with :meth:`Predictor.swap_state` / :meth:`Predictor.load_state_dict`
while other threads keep calling :meth:`Predictor.predict`.

Locking: one ``threading.Lock`` (``Predictor._lock``) guards the model weights and the
input buffer.

- ``predict`` / ``predict_batch`` hold it from filling the input buffer until the
  depth is back on the host (forward pass, upsampling and device-to-host copy
  included), so a frame is computed entirely with one set of weights and its
  :attr:`Predictor.version`.
- ``swap_state`` / ``load_state_dict`` with a state dict check it (names, shapes,
  dtypes) and copy it to the model's device *before* taking the lock, then hold the
  lock only for the in-place device-side copies and the version bump: a swap
  waits for at most the frame in progress, and a frame waits at most for one copy.
  A rejected state dict raises before the lock and leaves the model untouched.
- ``swap_state`` with a callable holds the lock for the whole call.

Backends: ``torch`` runs the private model copy; ``onnxruntime`` runs the model's exported
graph (:mod:`~depth_estimator_ros.learning.onnx_backend`) and keeps the torch copy only as
the record of the weights in force. Both share every step outside the network (resize,
upload, upsampling, range mask). With onnxruntime a swap also prepares the session for
the new weights before taking the lock (new input arrays for decoder tensors, a new
session when other tensors change; a second lock keeps swaps in order), so frames wait
only for the reference to change.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch import Tensor

from depth_estimator_ros.learning import onnx_backend
from depth_estimator_ros.learning.device import prefers_channels_last, resolve_device
from depth_estimator_ros.learning.transforms import resize_rgb
from depth_estimator_ros.models.base import CANONICAL_FOCAL

if TYPE_CHECKING:  # pragma: no cover - typing only
    from depth_estimator_ros.models import DepthModel

__all__ = ["Predictor"]

#: Relative distance from ``min_depth`` / ``max_depth`` within which an output counts as
#: produced by the range clamp (NaN, never valid depth): float32 rounds a clamped value
#: (``bound_depth``'s straight-through form, ``exp`` in the fast head) by about 1e-7.
_RANGE_TOL = 1e-5
#: The same under AMP, where float16 rounds a clamped value by up to 1e-3.
_AMP_RANGE_TOL = 2e-3


class Predictor:
    """Predict metric depth for whole images with a private, eval-mode model copy.

    Args:
        model: a ``DepthModel``; it is deep-copied, so the caller's model (and its
            training) is never touched, unless ``take_model``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a torch.device.
        amp: float16 autocast; ``None`` turns it on for CUDA, off for CPU. It is a
            CUDA-only option.
        channels_last: run the torch model in channels-last memory format; ``None``
            (default) turns it on for the torch backend on a CPU (measured 15-21 % faster
            there, README "Inference backends"), off on CUDA (not measured here).
        backend: ``"torch"``, ``"onnxruntime"`` or ``"auto"`` (onnxruntime when it imports
            and the model exports, else torch; :attr:`backend_note` says why).
        checkpoint: the file ``model`` came from: its ONNX export is cached beside it
            (by content hash) instead of exported at every start.
        threads: onnxruntime intra-op threads (0 = its own choice); torch uses its global setting.
        trt_cache_dir: TensorRT engine cache (onnxruntime on CUDA with TensorRT).
        take_model: the caller hands ``model`` over and never uses it again: no copy
            is made (the estimator node holds one copy of its model).

    Raises:
        ValueError: ``backend="onnxruntime"`` and the model does not export (the reason).
        ImportError: ``backend="onnxruntime"`` and onnxruntime is not installed.
    """

    def __init__(
        self,
        model: "DepthModel",
        device: str | torch.device = "cpu",
        *,
        amp: bool | None = None,
        channels_last: bool | None = None,
        backend: str = "torch",
        checkpoint: str | None = None,
        threads: int = 0,
        trt_cache_dir: str | None = None,
        take_model: bool = False,
    ) -> None:
        if backend not in onnx_backend.BACKENDS:
            raise ValueError(f"backend must be one of {onnx_backend.BACKENDS}, got {backend!r}")
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a DepthModel, got {type(model).__name__}")
        self.device = resolve_device(device)
        cuda = self.device.type == "cuda"
        if amp and not cuda:
            raise ValueError(f"amp=True needs a CUDA device, got {self.device}")
        self.amp = cuda if amp is None else bool(amp)
        self.input_size: tuple[int, int] = tuple(int(v) for v in model.input_size)  # type: ignore[assignment]
        self.min_depth = float(model.min_depth)
        self.max_depth = float(model.max_depth)
        model_copy = (model if take_model else copy.deepcopy(model)).to(self.device)
        model_copy.eval()
        model_copy.requires_grad_(False)
        self._model = model_copy
        self._lock = threading.Lock()
        self._version = 0
        self._swap_lock = threading.Lock()
        # load_over_base's record: the base values of the tensors it replaced, and which
        # tensors hold something else than the base now
        self._over_base_lock = threading.Lock()
        self._base_values: dict[str, Tensor] = {}
        self._overridden: frozenset[str] = frozenset()
        self._session: onnx_backend.OnnxSession | None = None
        self.backend, self.backend_note = "torch", "requested"
        if backend != "torch":
            self._session, self.backend_note = self._open_session(model, backend, checkpoint, threads, trt_cache_dir)
            self.backend = "torch" if self._session is None else "onnxruntime"
        if channels_last is None:
            channels_last = prefers_channels_last(self.device) and self.backend == "torch"
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self._model.to(memory_format=torch.channels_last)
        h, w = self.input_size
        # Pinned host memory lets the upload overlap with nothing else in flight and
        # skips a staging copy; only worth it when there is a GPU to upload to.
        self._host_input = torch.empty((1, h, w, 3), dtype=torch.uint8, pin_memory=cuda)

    def _open_session(
        self, model: "DepthModel", backend: str, checkpoint: str | None, threads: int, trt_cache_dir: str | None
    ) -> tuple[onnx_backend.OnnxSession | None, str]:
        """Export (or reuse the cached export of) ``model``; return the session or None with the reason."""
        if backend == "auto" and not onnx_backend.onnxruntime_available():
            return None, "auto: onnxruntime is not installed"
        try:
            if checkpoint:
                exported, path = onnx_backend.cached_export(model, checkpoint)
                where = f"graph {path}"
            else:
                exported, where = onnx_backend.export_onnx(model), "exported at start"
            session = onnx_backend.OnnxSession(exported.data, device=str(self.device), threads=threads,
                                               overrides=onnx_backend.state_arrays(model.state_dict()),
                                               trt_cache_dir=trt_cache_dir)
        except (ValueError, RuntimeError, OSError, ImportError) as exc:
            if backend == "onnxruntime":
                raise
            return None, f"auto: onnxruntime not used ({exc})"
        return session, (f"{where}, max |onnx - torch| {exported.max_abs_diff_m:.2g} m, "
                         f"providers {', '.join(session.providers)}")

    @property
    def model(self) -> "DepthModel":
        """Return the private model copy (read it, don't train or modify it)."""
        return self._model

    @property
    def version(self) -> int:
        """Return the weight version in force: 0 at start, then what the last swap set."""
        return self._version

    def predict(self, rgb: np.ndarray, focal: float | None = None) -> np.ndarray:
        """Predict depth for one image.

        Args:
            rgb: ``(H, W, 3)`` uint8, RGB order.
            focal: the camera's normalised focal length ``sqrt(fx * fy / (W * H))``
                (``Intrinsics.normalized_focal``); ``None`` = the canonical camera.

        Returns:
            ``(H, W)`` float32 metres, NaN where the prediction is not finite or not
            strictly inside ``(min_depth, max_depth)`` (the range clamp's values; see
            :meth:`_finish`) and where it is interpolated from such a pixel.
        """
        return self.predict_versioned(rgb, focal=focal)[0]

    def predict_versioned(
        self,
        rgb: np.ndarray,
        *,
        focal: float | None = None,
        timings: dict[str, float] | None = None,
        upsample: bool = True,
    ) -> tuple[np.ndarray, int]:
        """Predict depth for one image and say which weight version produced it.

        Args:
            rgb: ``(H, W, 3)`` uint8, RGB order.
            focal: as in :meth:`predict`.
            timings: when given, filled with the seconds spent in ``prepare`` (check,
                resize, upload), ``forward`` (the model itself; on CUDA the stream is
                synchronised to time it) and ``finish`` (download, upsampling to the
                image size, range mask).
            upsample: ``False`` returns the range-masked map at the model's resolution
                (:meth:`upsample` brings it to the image size later).

        Returns:
            ``(depth, version)``: ``(H, W)`` float32 metres (NaN invalid) and the
            :attr:`version` of the weights used for it.
        """
        start = time.perf_counter()
        self._check_image(rgb)
        small = resize_rgb(rgb, self.input_size)
        with self._lock:
            self._host_input[0].copy_(torch.from_numpy(small))
            batch = self._host_input.to(self.device, non_blocking=True)
            prepared = time.perf_counter()
            pred = self._run_model(batch, focal)
            if timings is not None and self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            forwarded = time.perf_counter()
            depth = self._finish(pred[0, 0], rgb.shape[:2] if upsample else None)
            version = self._version
        if timings is not None:
            timings["prepare"] = prepared - start
            timings["forward"] = forwarded - prepared
            timings["finish"] = time.perf_counter() - forwarded
        return depth, version

    def predict_batch(
        self, images: Sequence[np.ndarray], focals: Sequence[float] | None = None
    ) -> list[np.ndarray]:
        """Predict depth for several images in one forward pass.

        Args:
            images: ``(H_i, W_i, 3)`` uint8 RGB images; sizes may differ.
            focals: one normalised focal length per image; ``None`` = the canonical camera.

        Returns:
            One ``(H_i, W_i)`` float32 depth map in metres (NaN invalid) per image.
        """
        if len(images) == 0:
            return []
        for rgb in images:
            self._check_image(rgb)
        stacked = torch.from_numpy(np.stack([resize_rgb(rgb, self.input_size) for rgb in images]))
        with self._lock:
            pred = self._run_model(stacked.to(self.device), None if focals is None else list(focals))
            return [self._finish(pred[i, 0], rgb.shape[:2]) for i, rgb in enumerate(images)]

    def swap_state(
        self, update: Mapping[str, Tensor] | Callable[["DepthModel"], Any], *, version: int | None = None
    ) -> Any:
        """Replace weights between frames, never during one.

        Args:
            update: a (possibly partial) state dict whose tensors replace the
                model's tensors of the same names, or a callable that receives the
                model and changes it in place (e.g. applies a weight payload); the
                callable runs under the lock and must not call back into this
                Predictor.
            version: the version number frames predicted from now on report;
                ``None`` adds one to the current version.

        Returns:
            ``None`` for a state dict, else the callable's return value.

        Raises:
            ValueError: a state dict names an unknown tensor or has a wrong shape;
                nothing is changed then.
        """
        if callable(update):
            with self._swap_lock, self._lock:
                result = update(self._model)
                self._model.eval()
                self._model.requires_grad_(False)
                if self._session is not None:  # rare path: the new session is built under the lock
                    self._session = self._session.with_weights(self._model.state_dict())
                self._bump(version)
            return result
        self._apply(self._stage(update, strict=False), update, version)
        return None

    def load_over_base(self, state: Mapping[str, Tensor], *, version: int | None = None) -> None:
        """Put ``state``'s tensors in force over the base weights, between two frames.

        The one path by which new weights reach inference: a trainer's payload (the
        tensors that differ from the base), a room's parameters, or an empty state for
        the base itself. The base is the model this Predictor was built with; tensors
        that a previous call replaced and ``state`` leaves out return to it. Only those
        and ``state``'s tensors are copied, so a decoder update swaps the decoder (and
        with onnxruntime keeps the session). A tensor's base value is kept from the
        first time it is replaced, never the whole model. Do not mix with
        :meth:`swap_state` / :meth:`load_state_dict`, which do not keep that record.

        Args:
            state: tensors by ``state_dict`` name, on any device.
            version: as in :meth:`swap_state`.

        Raises:
            ValueError, TypeError: as :meth:`swap_state`; nothing changes then.
        """
        with self._over_base_lock:
            update = {**{k: self._base_values[k] for k in self._overridden - state.keys()}, **state}
            staged = self._stage(update, strict=False)  # raises before anything changes
            own = self._model.state_dict()
            for name in state.keys() - self._base_values.keys():
                self._base_values[name] = own[name].detach().clone()
            self._apply(staged, update, version)
            self._overridden = frozenset(state)

    def _apply(self, staged: list[tuple[Tensor, Tensor]], state: Mapping[str, Tensor], version: int | None) -> None:
        """Copy checked tensors in between two frames; with onnxruntime, swap in a session built first."""
        with self._swap_lock:
            session = None if self._session is None else self._session.with_weights(state)
            with self._lock, torch.no_grad():
                for target, source in staged:
                    target.copy_(source)
                if session is not None:
                    self._session = session
                self._bump(version)

    def load_state_dict(self, state: Mapping[str, Tensor], *, version: int | None = None) -> None:
        """Replace all weights with a complete state dict (every key, right shapes).

        Args:
            state: the model's full state dict, on any device.
            version: as in :meth:`swap_state`.

        Raises:
            ValueError: a key is missing or unknown, or a shape differs.
        """
        self._apply(self._stage(state, strict=True), state, version)

    def state_dict(self) -> dict[str, Tensor]:
        """Return a CPU copy of the weights in force (a consistent snapshot)."""
        with self._lock:
            return {
                name: t.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
                for name, t in self._model.state_dict().items()
            }

    def _bump(self, version: int | None) -> None:
        self._version = self._version + 1 if version is None else int(version)

    def _stage(self, state: Mapping[str, Tensor], *, strict: bool) -> list[tuple[Tensor, Tensor]]:
        """Check ``state`` against the model and move it to the device (no lock needed)."""
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a state dict (mapping of name to tensor) or a callable, "
                            f"got {type(state).__name__}")
        own = self._model.state_dict()
        unknown = sorted(set(state) - set(own))
        if unknown:
            raise ValueError(f"state dict has tensors this {self._model.arch!r} model lacks: {unknown[:5]}")
        if strict:
            missing = sorted(set(own) - set(state))
            if missing:
                raise ValueError(f"state dict lacks tensors of this {self._model.arch!r} model: {missing[:5]}")
        staged = []
        for name, source in state.items():
            target = own[name]
            if not isinstance(source, Tensor):
                raise TypeError(f"state dict entry {name!r} must be a tensor, got {type(source).__name__}")
            if source.shape != target.shape:
                raise ValueError(f"state dict entry {name!r} has shape {tuple(source.shape)}, "
                                 f"the model needs {tuple(target.shape)}")
            staged.append((target, source.detach().to(self.device, dtype=target.dtype)))
        return staged

    def _check_image(self, rgb: np.ndarray) -> None:
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise TypeError(f"rgb must be a (H, W, 3) uint8 array, got "
                            f"{getattr(rgb, 'dtype', type(rgb).__name__)} {getattr(rgb, 'shape', '')}")

    def _run_model(self, batch_hwc: Tensor, focal: float | Sequence[float] | None = None) -> Tensor:
        """Run the model on a uint8 ``(B, h, w, 3)`` device batch; return ``(B, 1, h, w)`` depth."""
        if self._session is not None:
            given = np.asarray(CANONICAL_FOCAL if focal is None else focal, np.float32).reshape(-1)
            if given.size not in (1, batch_hwc.shape[0]) or not (np.isfinite(given).all() and (given > 0).all()):
                raise ValueError(f"focal must be finite and > 0, one number or one per image; got {given[:4]}")
            focals = np.broadcast_to(given, (batch_hwc.shape[0],))
            return torch.from_numpy(self._session.run(batch_hwc.cpu().numpy(), focals))
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        rgb = batch_hwc.permute(0, 3, 1, 2).float().div_(255.0).contiguous(memory_format=memory_format)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            return self._model(rgb, focal)

    def _finish(self, depth: Tensor, size: tuple[int, int] | None) -> np.ndarray:
        """Bring one ``(h, w)`` prediction to the host, mask what the range clamp decided, upsample to ``size``.

        A pixel is valid only strictly inside the model's range: at ``min_depth`` or
        ``max_depth`` (within :data:`_RANGE_TOL`, or :data:`_AMP_RANGE_TOL` under AMP) the
        output clamp or a saturated output layer produced the value, not the image, and
        it is NaN, as are non-finite values. The mask is applied at the model's
        resolution, so the bilinear upsampling spreads NaN to every pixel interpolated
        from a masked one: no published value is a blend with a clamped one.

        The small map is copied to the host before upsampling (a 72x96 map is 27 KB, the
        640x480 result 1.2 MB), and OpenCV's bilinear resize (pixel centres as
        ``F.interpolate(..., align_corners=False)``, NaN spreading alike) costs a quarter
        of torch's CPU upsampling.
        """
        small = depth.float().cpu().numpy()
        tol = _AMP_RANGE_TOL if self.amp else _RANGE_TOL
        with np.errstate(invalid="ignore"):
            inside = (small > self.min_depth * (1 + tol)) & (small < self.max_depth * (1 - tol))
        out = np.where(inside, small, np.float32(np.nan))
        return out if size is None else self.upsample(out, size)

    @staticmethod
    def upsample(small: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Bring a model-resolution map from ``predict_versioned(..., upsample=False)`` to ``size`` ``(H, W)``.

        The same bilinear resize the predictions get otherwise, so doing it later gives
        the same depth (an evaluation harness scores after a real-time stream, off the
        estimator's path).
        """
        height, width = size
        if small.shape != (height, width):
            small = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
        return small
