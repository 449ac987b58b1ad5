"""Static scenery: a wrapping 360-degree panorama of flat colours with large-scale structure.

A panorama is ``[H, P, 3]`` uint8; column ``u`` covers azimuth ``[u, u + 1) * 360 / P`` degrees and wraps
around (column P is column 0). Layers, back to front: sky bands, a sun or moon, a far silhouette (hills,
dunes, skyline, mountains) whose height varies slowly with azimuth, ground bands, and a few large landmarks
at random azimuths, so every view direction looks different and a returning camera can recognise it.

Background colours are muted and subject colours (`subjects.SUBJECT_COLOURS`) saturated, at least
`MIN_BACKGROUND_DISTANCE` apart in RGB, so a subject can be segmented by colour alone
(`metrics.segment_subjects`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Smallest RGB distance between any background colour and any subject colour (tested).
MIN_BACKGROUND_DISTANCE = 95.0


@dataclass(frozen=True)
class SceneStyle:
    """Colours and landmark kinds of one scene style."""

    name: str
    words: str
    """How captions describe the scene."""
    sky: tuple[tuple[int, int, int], ...]
    """Sky bands from the top down."""
    orb: tuple[int, int, int]
    """Sun or moon."""
    far: tuple[int, int, int]
    """Far silhouette (hills, dunes, skyline, mountains)."""
    far_kind: str
    """"hills" (smooth) or "skyline" (blocky)."""
    ground: tuple[tuple[int, int, int], tuple[int, int, int]]
    """Far and near ground bands."""
    landmarks: tuple[str, ...]
    """Landmark kinds drawn from `LANDMARK_DRAWERS`."""
    accents: tuple[tuple[int, int, int], ...]
    """Landmark colours: [0] main, [1] secondary, [2] detail."""


SCENE_STYLES: dict[str, SceneStyle] = {
    s.name: s
    for s in (
        SceneStyle(
            name="meadow",
            words="a green meadow under a blue sky",
            sky=((125, 165, 205), (160, 190, 215)),
            orb=(235, 230, 180),
            far=(105, 135, 115),
            far_kind="hills",
            ground=((120, 160, 95), (100, 140, 80)),
            landmarks=("tree", "barn", "tree", "rock"),
            accents=((55, 95, 60), (150, 80, 65), (115, 85, 60)),
        ),
        SceneStyle(
            name="desert",
            words="a sandy desert",
            sky=((200, 190, 170), (218, 208, 188)),
            orb=(245, 240, 215),
            far=(175, 120, 90),
            far_kind="hills",
            ground=((215, 188, 140), (198, 168, 122)),
            landmarks=("cactus", "pyramid", "rock"),
            accents=((90, 120, 70), (185, 155, 105), (140, 110, 90)),
        ),
        SceneStyle(
            name="city",
            words="a grey city street",
            sky=((165, 175, 190), (190, 195, 205)),
            orb=(225, 225, 215),
            far=(120, 125, 140),
            far_kind="skyline",
            ground=((150, 150, 150), (95, 95, 100)),
            landmarks=("building", "tower", "building"),
            accents=((130, 115, 105), (95, 100, 118), (205, 200, 170)),
        ),
        SceneStyle(
            name="snow",
            words="snowy mountains",
            sky=((175, 195, 220), (205, 215, 230)),
            orb=(240, 240, 225),
            far=(135, 145, 170),
            far_kind="hills",
            ground=((228, 232, 238), (208, 214, 226)),
            landmarks=("pine", "cabin", "pine", "rock"),
            accents=((45, 80, 70), (120, 90, 70), (235, 235, 242)),
        ),
        SceneStyle(
            name="dusk",
            words="a dark landscape at dusk",
            sky=((60, 55, 95), (110, 75, 110), (170, 115, 115)),
            orb=(225, 225, 200),
            far=(75, 65, 100),
            far_kind="hills",
            ground=((88, 86, 96), (66, 66, 78)),
            landmarks=("house", "tree", "tower"),
            accents=((38, 38, 56), (100, 80, 100), (220, 195, 125)),
        ),
    )
}


def background_colours(style: SceneStyle) -> np.ndarray:
    """``[K, 3]`` every colour a panorama of this style can contain."""
    colours = [*style.sky, style.orb, style.far, *style.ground, *style.accents]
    return np.array(colours, dtype=np.float64)


PACKED = np.dtype("<u4")  # one pixel as a little-endian word: bytes R, G, B, 0


def pack_rgb(colour) -> np.ndarray:
    """(r, g, b) → one `PACKED` word, so a pixel moves as one machine word in gathers."""
    r, g, b = (int(c) for c in colour)
    return np.array(r | g << 8 | b << 16, dtype=PACKED)


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """uint32 ``[...]`` from `pack_rgb` → uint8 ``[..., 3]`` (a copy)."""
    return np.ascontiguousarray(packed.view(np.uint8).reshape(*packed.shape, 4)[..., :3])


class _Canvas:
    """A panorama being painted (packed uint32 pixels), with the coordinates every layer uses."""

    def __init__(self, height: int, width: int):
        self.image = np.zeros((height, width), dtype=PACKED)
        self.height, self.width = height, width
        self.rows = np.arange(height, dtype=np.float64)[:, None]  # (H, 1), pixel centres at y + 0.5
        self.cols = np.arange(width, dtype=np.float64)[None, :]  # (1, P)

    def dx(self, centre: float) -> np.ndarray:
        """(1, P) signed horizontal distance of each column centre to `centre`, wrapped to [-P/2, P/2)."""
        return (self.cols + 0.5 - centre + self.width / 2) % self.width - self.width / 2

    def paint(self, mask: np.ndarray, colour) -> None:
        np.putmask(self.image, np.broadcast_to(mask, self.image.shape), pack_rgb(colour))

    def rect(self, centre: float, half_width: float, top: float, bottom: float, colour) -> None:
        y = self.rows + 0.5
        self.paint((np.abs(self.dx(centre)) <= half_width) & (y >= top) & (y <= bottom), colour)

    def triangle(self, centre: float, half_width: float, top: float, bottom: float, colour) -> None:
        """Upward triangle: apex at (centre, top), base `2 * half_width` wide at `bottom`."""
        y = self.rows + 0.5
        reach = half_width * np.clip((y - top) / max(bottom - top, 1e-6), 0.0, 1.0)
        self.paint((np.abs(self.dx(centre)) <= reach) & (y >= top) & (y <= bottom), colour)

    def ellipse(self, centre: float, row: float, half_width: float, half_height: float, colour) -> None:
        y = self.rows + 0.5
        self.paint((self.dx(centre) / half_width) ** 2 + ((y - row) / half_height) ** 2 <= 1.0, colour)


# Landmarks stand on the horizon row `base`; `size` is their height in pixels. Each takes the canvas,
# the azimuth column, base, size, style accents and an rng.
def _tree(c: _Canvas, u, base, size, accents, rng) -> None:
    c.rect(u, 0.09 * size, base - 0.45 * size, base + 1, accents[2])
    c.ellipse(u, base - 0.62 * size, 0.34 * size, 0.38 * size, accents[0])


def _pine(c: _Canvas, u, base, size, accents, rng) -> None:
    c.rect(u, 0.07 * size, base - 0.2 * size, base + 1, accents[1])
    c.triangle(u, 0.32 * size, base - size, base - 0.15 * size, accents[0])


def _barn(c: _Canvas, u, base, size, accents, rng) -> None:
    c.rect(u, 0.45 * size, base - 0.6 * size, base + 1, accents[1])
    c.triangle(u, 0.55 * size, base - size, base - 0.6 * size, accents[2])
    c.rect(u, 0.12 * size, base - 0.3 * size, base + 1, accents[2])


def _house(c: _Canvas, u, base, size, accents, rng) -> None:
    c.rect(u, 0.4 * size, base - 0.6 * size, base + 1, accents[0])
    c.triangle(u, 0.5 * size, base - size, base - 0.6 * size, accents[1])
    c.rect(u - 0.18 * size, 0.08 * size, base - 0.45 * size, base - 0.3 * size, accents[2])
    c.rect(u + 0.18 * size, 0.08 * size, base - 0.45 * size, base - 0.3 * size, accents[2])


def _cabin(c: _Canvas, u, base, size, accents, rng) -> None:
    c.rect(u, 0.35 * size, base - 0.5 * size, base + 1, accents[1])
    c.triangle(u, 0.45 * size, base - 0.85 * size, base - 0.5 * size, accents[2])


def _rock(c: _Canvas, u, base, size, accents, rng) -> None:
    c.ellipse(u, base, 0.5 * size, 0.45 * size, accents[2])


def _cactus(c: _Canvas, u, base, size, accents, rng) -> None:
    c.rect(u, 0.09 * size, base - size, base + 1, accents[0])
    c.rect(u - 0.22 * size, 0.06 * size, base - 0.7 * size, base - 0.35 * size, accents[0])
    c.rect(u - 0.13 * size, 0.09 * size, base - 0.41 * size, base - 0.35 * size, accents[0])
    c.rect(u + 0.22 * size, 0.06 * size, base - 0.85 * size, base - 0.5 * size, accents[0])
    c.rect(u + 0.13 * size, 0.09 * size, base - 0.56 * size, base - 0.5 * size, accents[0])


def _pyramid(c: _Canvas, u, base, size, accents, rng) -> None:
    c.triangle(u, 0.8 * size, base - size, base + 1, accents[1])


def _building(c: _Canvas, u, base, size, accents, rng) -> None:
    half = (0.25 + 0.2 * rng.random()) * size
    c.rect(u, half, base - size, base + 1, accents[int(rng.integers(0, 2))])
    # A grid of windows: columns and rows of lit panes.
    y = c.rows + 0.5
    dx = c.dx(u)
    pane = max(size / 8.0, 1.0)
    lit = (np.abs(dx) <= half - pane * 0.6) & (y >= base - size + pane) & (y <= base - pane)
    lit &= ((dx + half) % (2 * pane) < pane) & ((y - base) % (2 * pane) < pane)
    c.paint(lit, accents[2])


def _tower(c: _Canvas, u, base, size, accents, rng) -> None:
    c.rect(u, 0.12 * size, base - size, base + 1, accents[1])
    c.rect(u, 0.22 * size, base - size, base - 0.8 * size, accents[1])
    c.rect(u, 0.06 * size, base - 0.7 * size, base - 0.55 * size, accents[2])


LANDMARK_DRAWERS = {
    "tree": _tree,
    "pine": _pine,
    "barn": _barn,
    "house": _house,
    "cabin": _cabin,
    "rock": _rock,
    "cactus": _cactus,
    "pyramid": _pyramid,
    "building": _building,
    "tower": _tower,
}


def _profile(kind: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """(P,) height in pixels of a "hills" or "skyline" silhouette above its base, periodic in azimuth."""
    u = np.arange(width) + 0.5
    if kind == "skyline":
        # Blocks of random width and height, wrapping around.
        edges = np.sort(rng.choice(width, size=max(3, width // 12), replace=False))
        heights = rng.uniform(0.1, 0.35, size=len(edges)) * height
        block = (np.searchsorted(edges, np.arange(width), side="right") - 1) % len(edges)
        return heights[block]
    # Hills: a few low-frequency sinusoids (whole periods around the panorama, so it wraps seamlessly).
    profile = np.zeros(width)
    for freq in rng.choice(np.arange(1, 6), size=3, replace=False):
        profile += rng.uniform(0.3, 1.0) / freq**0.5 * np.sin(2 * np.pi * (freq * u / width + rng.random()))
    profile = (profile - profile.min()) / max(np.ptp(profile), 1e-6)
    return (0.05 + 0.25 * profile) * height


def render_panorama(
    style: SceneStyle, height: int, width: int, rng: np.random.Generator
) -> tuple[np.ndarray, int, list[str]]:
    """Paint one panorama → ``(image, horizon_row, landmark kinds left to right)``.

    ``image`` is ``[H, P]`` packed uint32 (see `pack_rgb`).
    """
    canvas = _Canvas(height, width)
    horizon = int(round(height * rng.uniform(0.5, 0.6)))
    y = canvas.rows + 0.5

    # 1. sky bands, top down
    band_edges = np.linspace(0, horizon, len(style.sky) + 1)
    for colour, top in zip(style.sky, band_edges[:-1], strict=True):
        canvas.paint(y >= top, colour)
    # 2. sun or moon, high in the sky
    canvas.ellipse(rng.uniform(0, width), rng.uniform(0.15, 0.3) * height, 0.06 * height, 0.06 * height, style.orb)
    # 3. a few broad clouds in the lightest sky colour, kept above the landmarks
    for u in rng.uniform(0, width, size=int(rng.integers(1, 4))):
        row = rng.uniform(0.12, 0.3) * height
        canvas.ellipse(u, row, rng.uniform(0.3, 0.6) * height, 0.05 * height + 1, style.sky[-1])
    # 4. far silhouette
    canvas.paint(y >= horizon - _profile(style.far_kind, width, height, rng)[None, :], style.far)
    # 5. ground: a far band and a near band whose edge undulates slowly with azimuth
    canvas.paint(y >= horizon, style.ground[0])
    edge = _profile("hills", width, height, rng) * 0.6
    canvas.paint(y >= horizon + 0.25 * (height - horizon) + edge[None, :], style.ground[1])
    # 6. landmarks at well-spread azimuths (a jittered grid), large enough to be recognisable
    count = int(rng.integers(5, 9))
    slots = (np.arange(count) + rng.uniform(0.2, 0.8, size=count)) * width / count
    slots = (slots + rng.uniform(0, width)) % width
    kinds = [str(k) for k in rng.choice(style.landmarks, size=count)]
    for u, kind in zip(slots, kinds, strict=True):
        size = rng.uniform(0.5, 0.95) * horizon
        LANDMARK_DRAWERS[kind](canvas, float(u), horizon + 1, size, style.accents, rng)
    order = np.argsort(slots)
    return canvas.image, horizon, [kinds[i] for i in order]
