"""Synthetic indoor rooms rendered by vectorised ray casting, with Kinect-like depth.

Each room is an axis-aligned box (floor, four walls, ceiling) with furniture
boxes standing along the walls. Every surface carries a procedural texture
(planks, tiles, carpet, wallpaper, bricks, paint) mapped at a metric scale, so
texture density changes with distance and slant (perspective gradients), and is
lit by ceiling point lights with distance fall-off, Lambert shading and glossy
highlights. A camera walks a smooth path through the free middle of the room,
so consecutive frames overlap like a hand-held sensor stream.

Depth is the z-depth of the first hit in metres, then made Kinect-like: axial
noise ``sigma(z) = 0.0012 + 0.0019 (z - 0.4)^2`` m (Nguyen et al., 2012), and
holes (NaN) at grazing angles, in glossy highlights, in a band beside depth
discontinuities (the projector's shadow), in a few random blobs, and outside the
0.5-10 m working range.

Everything is deterministic: the room comes from ``(seed, room)`` and the
per-frame noise from ``(seed, room, frame)``, so frames render identically in
any order and on any machine.

Coordinates: world x, y (up), z right-handed, metres; camera axes as in OpenCV
(x right, y down, z forward).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import cv2
import numpy as np

from depth_estimator_ros.data.base import DataError, FrameSource
from depth_estimator_ros.data.frame import Frame, Intrinsics

__all__ = ["Room", "make_room", "camera_pose", "render_view", "SyntheticRooms"]

MIN_DEPTH = 0.5
MAX_DEPTH = 10.0
_TEXTURE_SIZE = 64
_CLEARANCE = 0.75  # metres between the camera path and any surface
_CLOSE_CLEARANCE = 0.35  # the same in close-range rooms
_KINECT = Intrinsics(525.0, 525.0, 319.5, 239.5, 640, 480)


@dataclass(frozen=True)
class Room:
    """A furnished box room.

    Attributes:
        size: ``(3,)`` room extent in metres along x, y (height), z; the room spans ``[0, size]``.
        boxes: ``(K, 2, 3)`` furniture boxes as (min corner, max corner), metres.
        textures: ``(M, S, S, 3)`` float32 albedo textures in [0, 1].
        texture_scale: ``(M,)`` metres covered by one texture tile.
        gloss: ``(M,)`` specular strength in [0, 1] per material.
        materials: ``(6 + K,)`` material of each object: room faces ``-x, +x, -y
            (floor), +y (ceiling), -z, +z`` then the boxes.
        lights: ``(L, 3)`` point light positions, metres.
        light_power: ``(L,)`` relative power of each light.
        path_center: ``(3,)`` centre of the camera path, metres.
        path_radius: ``(3,)`` half-extent of the camera path along x, y, z, metres.
        seed: the seed the room was built from.
        index: the room's index under that seed.
        pitch: mean camera pitch of the walk, radians (negative: looking down).
        close: a close-range room (:func:`make_room`'s ``close``).
    """

    size: np.ndarray
    boxes: np.ndarray
    textures: np.ndarray
    texture_scale: np.ndarray
    gloss: np.ndarray
    materials: np.ndarray
    lights: np.ndarray
    light_power: np.ndarray
    path_center: np.ndarray
    path_radius: np.ndarray
    seed: int
    index: int = 0
    pitch: float = -0.2
    close: bool = False


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Return ``(size, size)`` tileable smooth noise in about [-1, 1]."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    tiled = np.tile(coarse, (3, 3))
    big = cv2.resize(tiled, (3 * size, 3 * size), interpolation=cv2.INTER_CUBIC)
    return np.clip(big[size : 2 * size, size : 2 * size], -2.5, 2.5) / 2.5


def _random_colour(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    """Return an RGB colour in [0, 1] from a random hue with the given saturation/value ranges."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*saturation) * 255, rng.uniform(*value) * 255]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0


def _texture(rng: np.random.Generator, kind: str, base: np.ndarray, accent: np.ndarray) -> np.ndarray:
    """Return one ``(S, S, 3)`` tileable texture of ``kind``."""
    s = _TEXTURE_SIZE
    v, u = np.mgrid[0:s, 0:s].astype(np.float32) / s
    grain = _smooth_noise(rng, s, rng.integers(4, 12))
    if kind == "paint":
        mix = 0.5 + 0.04 * grain
    elif kind == "stripes":
        count = rng.integers(2, 6)
        mix = (np.floor(u * 2 * count) % 2).astype(np.float32) * 0.8 + 0.05 * grain
    elif kind == "dots":
        count = rng.integers(2, 5)
        cu, cv_ = (u * count) % 1 - 0.5, (v * count) % 1 - 0.5
        mix = (cu * cu + cv_ * cv_ < 0.06).astype(np.float32) * 0.9 + 0.04 * grain
    elif kind == "tiles":
        count = rng.integers(2, 5)
        grout = ((u * count) % 1 < 0.06) | ((v * count) % 1 < 0.06)
        tile_id = np.floor(u * count) + count * np.floor(v * count)
        mix = 0.1 + 0.1 * np.sin(tile_id * 12.9898).astype(np.float32) ** 2 + 0.05 * grain
        mix = np.where(grout, 1.0, mix)
    elif kind == "planks":
        count = rng.integers(3, 7)
        plank = np.floor(v * count)
        offset = (plank * 0.37) % 1
        fine = _smooth_noise(rng, s, 24)
        mix = 0.25 + 0.2 * np.sin(plank * 7.13) ** 2 + 0.15 * fine + 0.1 * np.sin(2 * math.pi * (u + offset) * 3)
        mix = np.where((v * count) % 1 < 0.05, 0.95, mix)
    elif kind == "bricks":
        rows = rng.integers(4, 8)
        row = np.floor(v * rows)
        shifted = (u * 2 + 0.5 * (row % 2)) % 1
        mortar = ((v * rows) % 1 < 0.1) | (shifted < 0.05)
        mix = np.where(mortar, 0.95, 0.2 + 0.15 * grain)
    elif kind == "carpet":
        mix = 0.5 + 0.25 * grain + 0.15 * rng.standard_normal((s, s)).astype(np.float32)
    else:
        raise ValueError(f"unknown texture kind {kind!r}")
    mix = np.clip(mix, 0.0, 1.0).astype(np.float32)[..., None]
    return np.clip(base * (1 - mix) + accent * mix, 0.0, 1.0).astype(np.float32)


_LAYOUT_STREAM, _PATH_STREAM = 1, 2  # independent random streams of one room


def _room_rng(seed: int, room: int, close: bool, stream: int) -> np.random.Generator:
    """Return the generator of one ``stream`` of room ``room`` of ``seed``.

    A close-range room's key has one more entry, so it never shares draws with the
    regular room of the same seed and index (and keys of regular rooms stay as they were).
    """
    key = [int(seed), int(room), stream]
    return np.random.default_rng([*key, 1] if close else key)


class _Palette:
    """The materials of one room, drawn one by one from the room's layout stream.

    Attributes:
        textures: ``(S, S, 3)`` albedo texture of each material so far.
        scales: metres covered by one tile of each texture.
        gloss: specular strength of each material.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.textures: list[np.ndarray] = []
        self.scales: list[float] = []
        self.gloss: list[float] = []

    def add(
        self,
        kinds: tuple[str, ...],
        saturation: tuple[float, float],
        value: tuple[float, float],
        scale: tuple[float, float],
        shiny: float,
    ) -> int:
        """Draw a material of one of ``kinds`` (see :func:`_texture`) and return its index."""
        base = _random_colour(self.rng, saturation, value)
        accent = np.clip(base * self.rng.uniform(0.4, 1.6) + self.rng.uniform(-0.15, 0.15, 3), 0, 1).astype(np.float32)
        self.textures.append(_texture(self.rng, str(self.rng.choice(kinds)), base, accent))
        self.scales.append(self.rng.uniform(*scale))
        self.gloss.append(shiny * self.rng.uniform(0.5, 1.0))
        return len(self.textures) - 1


_FURNITURE_KINDS = (("planks", "paint"), ("paint", "stripes", "tiles"), ("carpet", "paint"))


def _face_materials(palette: _Palette, rng: np.random.Generator) -> list[int]:
    """Draw the materials of the room's faces: walls (one of them an accent wall), floor and ceiling.

    Returns:
        The material of each face in the order ``-x, +x, -y (floor), +y (ceiling), -z, +z``.
    """
    wall = palette.add(("paint", "stripes", "dots", "bricks"), (0.05, 0.5), (0.55, 0.95), (0.4, 1.5), 0.1)
    accent_wall = palette.add(("paint", "stripes", "bricks", "dots"), (0.2, 0.8), (0.35, 0.9), (0.4, 1.5), 0.1)
    floor = palette.add(("planks", "tiles", "carpet"), (0.15, 0.7), (0.25, 0.75), (0.5, 1.5), 0.6)
    ceiling = palette.add(("paint",), (0.0, 0.1), (0.85, 1.0), (1.0, 2.0), 0.0)
    walls = [wall] * 4
    walls[rng.integers(0, 4)] = accent_wall
    return [walls[0], walls[1], floor, ceiling, walls[2], walls[3]]


def _furniture_box(rng: np.random.Generator, size: np.ndarray, max_reach: float) -> np.ndarray:
    """Draw one piece of furniture standing against a wall (or a shelf on it) of a room of ``size``.

    Returns:
        ``(2, 3)`` float32: the box's min and max corners, metres.
    """
    along_x = bool(rng.integers(0, 2))  # against a wall facing +-z (runs along x) or +-x
    far_side = bool(rng.integers(0, 2))
    run = min(rng.uniform(0.5, 1.8), float(size[0 if along_x else 2]))
    reach = rng.uniform(0.35, max_reach)
    height = float(rng.choice([rng.uniform(0.4, 0.9), rng.uniform(1.2, 2.2)]))
    lo, hi = np.zeros(3, np.float32), np.zeros(3, np.float32)
    a, b = (0, 2) if along_x else (2, 0)
    start = rng.uniform(0.0, size[a] - run)
    lo[a], hi[a] = start, start + run
    lo[b], hi[b] = (size[b] - reach, size[b]) if far_side else (0.0, reach)
    lift = 0.0 if rng.random() < 0.8 else rng.uniform(0.9, 1.4)  # some wall shelves
    lo[1], hi[1] = lift, min(lift + height, size[1] - 0.3)
    return np.stack([lo, hi])


def make_room(seed: int, room: int = 0, *, close: bool = False) -> Room:
    """Build room number ``room`` of ``seed``: size, furniture, materials and lights.

    Args:
        seed: generator seed.
        room: room index under that seed.
        close: a *close-range* room instead: a small room (closet, kitchenette, office
            corner: 2.0-3.5 m across) crowded with furniture, a camera path that passes
            0.35 m from it and looks down at tables and counters. Depth is mostly
            0.5-2 m there, where the regular rooms (4-7 m, 0.75 m clearance) are
            mostly 1.5-6 m. Same seed and index, different room.

    Returns:
        The :class:`Room`; the same arguments always give the same room.
    """
    rng = _room_rng(seed, room, close, _LAYOUT_STREAM)
    if close:
        size = np.array([rng.uniform(2.0, 3.5), rng.uniform(2.3, 2.8), rng.uniform(2.0, 3.5)], np.float32)
    else:
        size = np.array([rng.uniform(4.0, 6.5), rng.uniform(2.5, 3.2), rng.uniform(4.5, 7.0)], np.float32)
    palette = _Palette(rng)
    materials = _face_materials(palette, rng)

    # furniture along the walls, leaving the middle free for the camera path
    boxes = []
    max_reach = 0.7 if close else 0.8
    for _ in range(rng.integers(6, 11) if close else rng.integers(4, 9)):
        boxes.append(_furniture_box(rng, size, max_reach))
        materials.append(palette.add(_FURNITURE_KINDS[rng.integers(0, 3)], (0.1, 0.9), (0.15, 0.9), (0.3, 1.0), 0.8))

    margin = max_reach + (_CLOSE_CLEARANCE if close else _CLEARANCE)  # furniture reach + clearance
    half = np.array([max(0.05, size[0] / 2 - margin), 0.2, max(0.05, size[2] / 2 - margin)], np.float32)
    center = np.array([size[0] / 2, rng.uniform(1.2, 1.5), size[2] / 2], np.float32)
    pitch = rng.uniform(-0.6, -0.3) if close else -0.2
    n_lights = int(rng.integers(1, 3))
    lights = np.stack(
        [[rng.uniform(1.0, size[0] - 1.0), size[1] - 0.2, rng.uniform(1.0, size[2] - 1.0)] for _ in range(n_lights)]
    ).astype(np.float32)
    return Room(
        size=size,
        boxes=np.array(boxes, np.float32).reshape(-1, 2, 3),
        textures=np.stack(palette.textures),
        texture_scale=np.array(palette.scales, np.float32),
        gloss=np.array(palette.gloss, np.float32),
        materials=np.array(materials, np.int64),
        lights=lights,
        light_power=rng.uniform(0.7, 1.3, n_lights).astype(np.float32),
        path_center=center,
        path_radius=half,
        seed=int(seed),
        index=int(room),
        pitch=float(pitch),
        close=bool(close),
    )


def camera_pose(room: Room, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the camera pose at time ``t`` seconds on the room's smooth path.

    The path is a Lissajous curve through the free middle of the room (about
    0.3 m/s) with a slowly sweeping heading and a downward pitch around the
    room's (gentle in regular rooms, steeper in close-range ones).

    Returns:
        ``(position (3,), rotation (3, 3))``; rotation columns are the camera's
        x (right), y (down) and z (forward) axes in world coordinates.
    """
    # Per room: frequencies, start point and heading differ between the rooms of a seed
    # (seeded by the seed alone, every room's walk started looking the same way).
    rng = _room_rng(room.seed, room.index, room.close, _PATH_STREAM)
    w = rng.uniform(0.08, 0.16, 3) * 2 * math.pi / 2
    phase = rng.uniform(0, 2 * math.pi, 6)
    position = room.path_center + room.path_radius * np.sin(w * t + phase[:3]).astype(np.float32)
    yaw = phase[3] + 0.35 * t + 0.6 * math.sin(0.21 * t + phase[4])
    pitch = room.pitch + 0.15 * math.sin(0.27 * t + phase[5])
    forward = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return position.astype(np.float32), np.stack([right, down, forward], axis=1).astype(np.float32)


def _pixel_rays(intrinsics: Intrinsics) -> np.ndarray:
    """Return ``(3, H, W)`` camera-frame rays with z = 1, so ray length t is z-depth."""
    v, u = np.mgrid[0 : intrinsics.height, 0 : intrinsics.width].astype(np.float32)
    x = (u - intrinsics.cx) / intrinsics.fx
    y = (v - intrinsics.cy) / intrinsics.fy
    return np.stack([x, y, np.ones_like(x)])


def _box_window(box: np.ndarray, position: np.ndarray, rotation: np.ndarray, k: Intrinsics) -> tuple[slice, slice] | None:
    """Return the image window covering ``box``, the whole image if it straddles the camera, None if unseen."""
    corners = np.array(np.meshgrid(*box.T, indexing="ij")).reshape(3, -1)  # (3, 8)
    cam = rotation.T @ (corners - position[:, None])
    if np.all(cam[2] <= 0):
        return None
    if np.any(cam[2] <= 0.05):
        return slice(None), slice(None)
    u = k.fx * cam[0] / cam[2] + k.cx
    v = k.fy * cam[1] / cam[2] + k.cy
    u0, u1 = max(0, int(math.floor(u.min()))), min(k.width, int(math.ceil(u.max())) + 1)
    v0, v1 = max(0, int(math.floor(v.min()))), min(k.height, int(math.ceil(v.max())) + 1)
    if u0 >= u1 or v0 >= v1:
        return None
    return slice(v0, v1), slice(u0, u1)


def _select(axis0: np.ndarray, axis1: np.ndarray, values: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Pick ``values[a]`` per pixel where ``a`` is the hit axis (given as masks for 0 and 1)."""
    return np.where(axis0, values[0], np.where(axis1, values[1], values[2]))


def _pow40(x: np.ndarray) -> np.ndarray:
    """Return ``x ** 40`` by repeated squaring (several times faster than ``**``)."""
    x2 = x * x
    x8 = (x2 * x2) ** 2
    x32 = (x8 * x8) ** 2
    return x32 * x8


def _room_hits(room: Room, o: np.ndarray, d: np.ndarray, inv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cast the rays ``o + t d`` out of the room: each leaves through the nearest of the three faces ahead.

    Args:
        o: ``(3,)`` ray origin (the camera centre), metres.
        d: ``(3, H, W)`` world ray directions, scaled so that ``t`` is z-depth.
        inv: ``1 / d``.

    Returns:
        ``(t (H, W) float32 metres, axis (H, W) int8)``: z-depth of the hit and the axis of the face hit.
    """
    h, w = d.shape[1:]
    t = np.empty((h, w), np.float32)
    axis = np.zeros((h, w), np.int8)
    for a in range(3):
        t_a = (np.where(d[a] > 0, room.size[a], np.float32(0.0)) - o[a]) * inv[a]
        if a == 0:
            t[...] = t_a
            continue
        nearer = t_a < t
        t[nearer] = t_a[nearer]
        axis[nearer] = a
    return t, axis


def _slab(box: np.ndarray, o: np.ndarray, inv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersect rays with ``box`` ((2, 3) min and max corners) by the slab test.

    Returns:
        ``(near, far, axis)`` per ray of ``inv`` (``(3, ...)``): the ray meets the box where
        ``near <= far``, first at ``t = near`` on a face normal to ``axis``.
    """
    near = far = box_axis = None
    for a in range(3):
        t1 = (box[0, a] - o[a]) * inv[a]
        t2 = (box[1, a] - o[a]) * inv[a]
        n_a, f_a = np.minimum(t1, t2), np.maximum(t1, t2)
        if a == 0:
            near, far, box_axis = n_a, f_a, np.zeros(n_a.shape, np.int8)
            continue
        later = n_a > near
        near = np.where(later, n_a, near)
        box_axis[later] = a
        far = np.minimum(far, f_a)
    return near, far, box_axis


def _furniture_hits(
    room: Room,
    o: np.ndarray,
    rotation: np.ndarray,
    intrinsics: Intrinsics,
    inv: np.ndarray,
    t: np.ndarray,
    axis: np.ndarray,
    obj: np.ndarray,
) -> None:
    """Put the furniture in front of the room's faces in ``t``, ``axis`` and ``obj`` (in place).

    Where a ray meets a box nearer than ``t``, its hit becomes the box's: z-depth, axis of the
    face and object ``6 + k``; each box is only tested inside its screen window.
    """
    for k, box in enumerate(room.boxes):
        window = _box_window(box, o, rotation, intrinsics)
        if window is None:
            continue
        rows, cols = window
        near, far, box_axis = _slab(box, o, inv[:, rows, cols])
        t_win = t[window]
        hit = (near <= far) & (near > 0) & (near < t_win)
        if hit.any():
            t_win[hit] = near[hit]
            axis[window][hit] = box_axis[hit]
            obj[window][hit] = 6 + k


def _albedo(
    room: Room, points: tuple[np.ndarray, ...], material: np.ndarray, axis0: np.ndarray, axis1: np.ndarray
) -> np.ndarray:
    """Look up the texture at the hit ``points`` (x, y, z, ``(H, W)`` each) at metric scale on the face hit.

    Returns:
        ``(H, W, 3)`` float32 albedo in [0, 1].
    """
    px, py, pz = points
    inv_scale = (np.float32(room.textures.shape[1]) / room.texture_scale)[material]
    size = room.textures.shape[1]
    iu = (np.where(axis0, pz, px) * inv_scale).astype(np.int32) & (size - 1)
    iv = (np.where(axis1, pz, py) * inv_scale).astype(np.int32) & (size - 1)
    texel = (material * size + iv) * size + iu
    return room.textures.reshape(-1, 3).take(texel.ravel(), axis=0).reshape(*material.shape, 3)


def _lighting(
    room: Room,
    points: tuple[np.ndarray, ...],
    d: np.ndarray,
    d_axis: np.ndarray,
    axis0: np.ndarray,
    axis1: np.ndarray,
    ray_len: np.ndarray,
    gloss: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Light the hit ``points``: ambient + Lambert with distance fall-off + Blinn-Phong highlights.

    Args:
        points: x, y, z of the hits, ``(H, W)`` each, metres.
        d: ``(3, H, W)`` world ray directions; ``d_axis`` their component along the normal's axis.
        ray_len: ``(H, W)`` length of the camera-frame rays (z = 1).
        gloss: ``(H, W)`` specular strength of the material hit.

    Returns:
        ``(shade, highlight)``, ``(H, W)`` float32 each: diffuse factor and specular intensity.
    """
    px, py, pz = points
    normal_sign = np.where(d_axis > 0, np.float32(-1.0), np.float32(1.0))  # normals face the camera
    view_axis = -d_axis / ray_len
    shade = np.full(px.shape, np.float32(0.22))
    highlight = np.zeros(px.shape, np.float32)
    for light, power in zip(room.lights, room.light_power):
        lx, ly, lz = light[0] - px, light[1] - py, light[2] - pz
        dist2 = lx * lx + ly * ly + lz * lz + np.float32(1e-6)
        inv_dist = np.float32(1.0) / np.sqrt(dist2)
        l_axis = _select(axis0, axis1, (lx, ly, lz)) * inv_dist
        lambert = np.maximum(l_axis * normal_sign, np.float32(0.0))
        shade += (power * np.float32(1.3)) * lambert / (np.float32(1.0) + np.float32(0.12) * dist2)
        l_dot_v = -(lx * d[0] + ly * d[1] + lz * d[2]) * inv_dist / ray_len
        half_len = np.sqrt(np.maximum(np.float32(2.0) + 2 * l_dot_v, np.float32(1e-6)))
        n_dot_h = np.maximum((l_axis + view_axis) * normal_sign / half_len, np.float32(0.0))
        highlight += (power * gloss) * (lambert > 0) * _pow40(n_dot_h)
    return shade, highlight


def _random_holes(holes: np.ndarray, rng: np.random.Generator) -> None:
    """Add up to three elliptic blobs to the ``(H, W)`` mask ``holes`` (in place)."""
    h, w = holes.shape
    for _ in range(int(rng.integers(0, 4))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.01, 0.05) * w, rng.uniform(0.01, 0.05) * w
        v0, v1 = int(max(0, cy - ry)), int(min(h, cy + ry + 1))
        u0, u1 = int(max(0, cx - rx)), int(min(w, cx + rx + 1))
        yy = (np.arange(v0, v1, dtype=np.float32)[:, None] - cy) / ry
        xx = (np.arange(u0, u1, dtype=np.float32)[None, :] - cx) / rx
        holes[v0:v1, u0:u1] |= yy * yy + xx * xx < 1.0


def _kinect_depth(
    t: np.ndarray, d_axis: np.ndarray, ray_len: np.ndarray, highlight: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Return the exact z-depth ``t`` ((H, W) metres) as a Kinect measures it.

    Axial noise ``sigma(z)``, and NaN at grazing angles, in specular ``highlight``, in the
    projector's shadow beside depth edges and in a few random blobs.
    """
    sigma = np.float32(0.0012) + np.float32(0.0019) * (t - np.float32(0.4)) ** 2
    depth = t + rng.standard_normal(t.shape, dtype=np.float32) * sigma
    holes = np.abs(d_axis) < np.float32(0.12) * ray_len  # grazing angle
    holes |= highlight > 0.35  # specular: the IR pattern is lost
    jump = np.abs(np.diff(t, axis=1)) > np.float32(0.05) * t[:, 1:]  # projector shadow beside edges
    holes[:, 1:] |= jump
    holes[:, 2:] |= jump[:, :-1]
    _random_holes(holes, rng)
    depth[holes] = np.nan
    return depth


def render_view(
    room: Room,
    position: np.ndarray,
    rotation: np.ndarray,
    intrinsics: Intrinsics,
    rng: np.random.Generator | None = None,
    *,
    rays: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast one view of ``room``.

    Args:
        room: the scene.
        position: ``(3,)`` camera centre in metres.
        rotation: ``(3, 3)`` camera-to-world rotation (columns x right, y down, z forward).
        intrinsics: pinhole model of the image to render.
        rng: source of sensor noise and random holes; None renders noise-free
            colour and exact depth (only out-of-range depth is NaN).
        rays: precomputed :func:`_pixel_rays` for ``intrinsics`` (speed).

    Returns:
        ``(rgb (H, W, 3) uint8, depth (H, W) float32 metres with NaN invalid)``.
    """
    h, w = intrinsics.height, intrinsics.width
    cam_rays = _pixel_rays(intrinsics) if rays is None else rays
    d = (rotation.astype(np.float32) @ cam_rays.reshape(3, -1)).reshape(3, h, w)  # world rays; t is z-depth
    d[np.abs(d) < 1e-7] = np.float32(1e-7)  # keeps 1/d finite; a 1e-7 slope never hits anything nearer
    inv = np.float32(1.0) / d
    o = position.astype(np.float32)

    t, axis = _room_hits(room, o, d, inv)
    d_axis = _select(axis == 0, axis == 1, d)
    obj = (2 * axis + (d_axis > 0)).astype(np.int32)  # room faces -x, +x, -y, +y, -z, +z
    _furniture_hits(room, o, rotation, intrinsics, inv, t, axis, obj)
    axis0, axis1 = axis == 0, axis == 1
    d_axis = _select(axis0, axis1, d)

    points = tuple(o[a] + d[a] * t for a in range(3))
    material = room.materials[obj]
    albedo = _albedo(room, points, material, axis0, axis1)
    ray_len = np.sqrt(cam_rays[0] * cam_rays[0] + cam_rays[1] * cam_rays[1] + np.float32(1.0))
    shade, highlight = _lighting(room, points, d, d_axis, axis0, axis1, ray_len, room.gloss[material])
    light_sum = shade[..., None] * albedo
    light_sum += (np.float32(0.8) * highlight)[..., None]

    depth = t
    if rng is not None:
        light_sum += (rng.standard_normal((h, w), dtype=np.float32) * np.float32(0.01))[..., None]
        depth = _kinect_depth(t, d_axis, ray_len, highlight, rng)
    depth[~((depth >= MIN_DEPTH) & (depth <= MAX_DEPTH))] = np.nan
    rgb = cv2.convertScaleAbs(light_sum, alpha=255.0)  # rounds and saturates to uint8
    return rgb, depth


_SPEC_KEYS = {
    "seed": int, "frames": int, "width": int, "height": int, "rooms": int, "first_room": int, "rate_hz": float,
    "noise": int, "close": float,
}  # fmt: skip


class SyntheticRooms(FrameSource):
    """Frames from ``rooms`` synthetic rooms, ``frames`` in all, each room a continuous camera walk.

    Frame ``i`` belongs to room ``first_room + i // ceil(frames / rooms)``; its stamp is
    ``i / rate_hz``. Intrinsics are a Kinect's (fx = fy = 525 at 640x480) scaled
    to ``width`` x ``height``.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        frames: int = 200,
        width: int = 320,
        height: int = 240,
        rooms: int = 1,
        first_room: int = 0,
        rate_hz: float = 30.0,
        noise: bool = True,
        close: float = 0.0,
    ) -> None:
        """Configure the generator; rooms are built on first use.

        Args:
            seed: seed of everything.
            frames: total number of frames (``>= 1``).
            width: image width in pixels (``>= 8``).
            height: image height in pixels (``>= 8``).
            rooms: number of different rooms (``1 <= rooms <= frames``).
            first_room: index of the first room. Rooms depend only on ``(seed, index)``,
                so ``first_room=5`` gives rooms 5, 6, ... of the same seed: a set of rooms
                disjoint from ``first_room=0, rooms=5`` (e.g. replay frames of a
                pretraining set that exclude the rooms forgetting is measured on).
            rate_hz: camera rate; the path speed is in metres per second.
            noise: add Kinect-like depth noise, holes and image noise.
            close: share of rooms that are close-range (``make_room(..., close=True)``),
                in ``[0, 1]``; which ones depends only on ``(seed, index)``, and with 0
                (the default) every room is the regular room of its index.

        Raises:
            ValueError: an argument out of its range.
        """
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        if width < 8 or height < 8:
            raise ValueError(f"width and height must be >= 8 pixels, got {width}x{height}")
        if not 1 <= rooms <= frames:
            raise ValueError(f"rooms must be in [1, frames={frames}], got {rooms}")
        if first_room < 0:
            raise ValueError(f"first_room must be >= 0, got {first_room}")
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        if not 0.0 <= close <= 1.0:
            raise ValueError(f"close must be in [0, 1], got {close}")
        self.close = float(close)
        self.seed, self.frames, self.rooms, self.first_room = int(seed), int(frames), int(rooms), int(first_room)
        self.rate_hz, self.noise = float(rate_hz), bool(noise)
        self.intrinsics = _KINECT.scaled(int(width), int(height))
        self.frames_per_room = -(-self.frames // self.rooms)
        self.name = f"synthetic-seed{self.seed}"
        self._rays = _pixel_rays(self.intrinsics)
        self._rooms: dict[int, Room] = {}

    @classmethod
    def from_spec(cls, spec: str, **overrides) -> "SyntheticRooms":
        """Build from ``"seed=3,frames=200,width=320,height=240"`` (any subset of the keyword arguments).

        Args:
            spec: comma-separated ``key=value`` items; keys are this class's keyword arguments.
            **overrides: keyword arguments that take precedence over ``spec``.

        Raises:
            DataError: an unknown key, a malformed value or a value out of range.
        """
        kwargs: dict[str, int | float] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            match = re.fullmatch(r"(\w+)\s*=\s*(\S+)", item)
            if match is None or match.group(1) not in _SPEC_KEYS:
                raise DataError(
                    f"synthetic:{spec}: bad item {item!r}; expected key=value with keys {', '.join(_SPEC_KEYS)}"
                )
            key, value = match.groups()
            try:
                kwargs[key] = _SPEC_KEYS[key](value)
            except ValueError:
                raise DataError(f"synthetic:{spec}: {key} must be {_SPEC_KEYS[key].__name__}, got {value!r}") from None
        kwargs.update(overrides)
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise DataError(f"synthetic:{spec}: {exc}") from None

    def room(self, index: int) -> Room:
        """Return room ``index`` (built once, then cached)."""
        if index not in self._rooms:
            self._rooms[index] = make_room(self.seed, index, close=self.is_close(index))
        return self._rooms[index]

    def is_close(self, index: int) -> bool:
        """Return whether room ``index`` is a close-range room (drawn from ``(seed, index)``)."""
        return self.close > 0 and float(np.random.default_rng([self.seed, int(index), 4]).random()) < self.close

    def __len__(self) -> int:
        return self.frames

    def _load(self, index: int) -> Frame:
        room_index, local = divmod(index, self.frames_per_room)
        room_index += self.first_room
        room = self.room(room_index)
        position, rotation = camera_pose(room, local / self.rate_hz)
        rng = np.random.default_rng([self.seed, room_index, local, 3]) if self.noise else None
        rgb, depth = render_view(room, position, rotation, self.intrinsics, rng, rays=self._rays)
        return Frame(
            rgb=rgb,
            depth=depth,
            stamp=index / self.rate_hz,
            intrinsics=self.intrinsics,
            name=f"{self.name}/room{room_index}/frame{local}",
        )
