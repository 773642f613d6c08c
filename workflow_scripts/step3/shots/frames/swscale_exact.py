"""The numbers of ffmpeg's default scaler for ``-s 48x27 -pix_fmt rgb24``,
integer for integer, so that frames decoded elsewhere (NVDEC) can be turned
into exactly the frames STEP3's ffmpeg command gives.

What ffmpeg does there (libswscale, read in FFmpeg 5.1/6.0's source; this is
our own code): one scaler converts the decoded YUV planes straight to RGB24.
Each plane is scaled horizontally first, to 15-bit intermediates (14-bit
filter coefficients, the sum shifted right and capped at 32767), then
vertically (12-bit coefficients) into the RGB writer. The filters are Keys'
bicubic (B=0, C=0.6) stretched over ``1 + (4*src + dst - 1) // dst`` taps when
shrinking, computed in 64-bit fixed point, trimmed of near-zero ends, padded to
the x86 alignment (4 taps horizontally, 2 vertically), folded back inside the
picture at its edges and normalised with error diffusion. With 4:2:0 or 4:2:2
input the RGB writer shares one chroma sample between two output pixels
(chroma scaled to 24 columns) and converts through lookup tables; with 4:4:4
input it converts each pixel with 30-bit arithmetic ("full chroma"). The
colour matrix is the frame's own (BT.709, BT.2020, FCC, SMPTE 240M; BT.601 for
everything else, unspecified included) and the range is the frame's.

This module builds those numbers once per video size (plain Python integers:
the rules are integer rules); yuv_to_rgb.py applies them as matrix products.
"""
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

OUT_W, OUT_H = 48, 27
H_ONE, V_ONE = 1 << 14, 1 << 12
H_ALIGN, V_ALIGN = 4, 2            # libswscale's filter alignment on x86 (MMX and later)
MAX_FILTER_TAPS = 256              # a longer filter makes libswscale cascade through a middle size
REDUCE_CUTOFF = 0.002              # share of the filter's weight trimmed from its ends
BICUBIC_B, BICUBIC_C = 0, int(0.6 * (1 << 24))
CENTRE = 128                       # chroma sample position in 1/256 of a pixel, as ffmpeg's CLI sets it

# YUV -> RGB coefficients per colour matrix (ffmpeg's table, indexed by the
# stream's matrix_coefficients code): (v->r, u->b, u->g, v->g), 16.16.
_BT601 = (104597, 132201, 25675, 53279)
_BT709 = (117489, 138438, 13975, 34925)
_MATRICES = {1: _BT709, 4: (104448, 132798, 24759, 53109), 7: (117579, 136230, 16907, 35559),
             9: (110013, 140363, 12277, 42626), 10: (110013, 140363, 12277, 42626)}
COLORSPACE_CODES = {"bt709": 1, "unknown": 2, "fcc": 4, "bt470bg": 5, "smpte170m": 6, "smpte240m": 7,
                    "ycgco": 8, "bt2020nc": 9, "bt2020c": 10}

# Pixel formats handled: (chroma x shift, chroma y shift, bit depth, full range by name).
PIXEL_FORMATS = {
    "yuv420p": (1, 1, 8, False), "yuvj420p": (1, 1, 8, True),
    "yuv422p": (1, 0, 8, False), "yuvj422p": (1, 0, 8, True),
    "yuv444p": (0, 0, 8, False), "yuvj444p": (0, 0, 8, True),
    "yuv420p10le": (1, 1, 10, False), "yuv422p10le": (1, 0, 10, False), "yuv444p10le": (0, 0, 10, False),
    # What NVDEC hands over, once its interleaved chroma is split (P016 shifted down to 10 bits).
    "nv12": (1, 1, 8, False), "p010le": (1, 1, 10, False), "p016le": (1, 1, 10, False),
}


class NotExact(ValueError):
    """ffmpeg would take a path this module does not reproduce (the message says which)."""


def _div(a: int, b: int) -> int:
    """C's integer division (towards zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _rounded_div(a: int, b: int) -> int:
    return _div(a + (b >> 1), b) if a >= 0 else _div(a - (b >> 1), b)


def _log2(x: int) -> int:
    return max(0, x.bit_length() - 1)


@dataclass(frozen=True)
class Filter:
    """One scaling direction: output ``i`` is the sum of ``coeffs[i, j] *
    src[starts[i] + j]``."""
    starts: np.ndarray  # int64 [dst]
    coeffs: np.ndarray  # int64 [dst, taps]
    src: int

    def dense(self) -> np.ndarray:
        """The same as a ``[dst, src]`` matrix."""
        out = np.zeros((len(self.starts), self.src), dtype=np.int64)
        for i, start in enumerate(self.starts):
            for j, c in enumerate(self.coeffs[i]):
                if c:
                    out[i, start + j] += c
        return out


def _bicubic(d: int) -> int:
    """Keys' kernel at distance ``d`` (1 << 30 = one source pixel), scaled by 1 << 54."""
    b, c = BICUBIC_B, BICUBIC_C
    if d >= 1 << 31:
        return 0
    dd = (d * d) >> 30
    ddd = (dd * d) >> 30
    if d < 1 << 30:
        return (12 * (1 << 24) - 9 * b - 6 * c) * ddd + (-18 * (1 << 24) + 12 * b + 6 * c) * dd \
            + (6 * (1 << 24) - 2 * b) * (1 << 30)
    return (-b - 6 * c) * ddd + (6 * b + 30 * c) * dd + (-12 * b - 48 * c) * d + (8 * b + 24 * c) * (1 << 30)


def _raw_taps(src: int, dst: int, inc: int, fone: int, src_pos: int, dst_pos: int) -> Tuple[List[int], List[List[int]]]:
    if abs(inc - 0x10000) < 10 and src_pos == dst_pos:  # same size: a copy
        return list(range(dst)), [[fone] for _ in range(dst)]
    taps = 1 + 4 if inc <= 1 << 16 else 1 + (4 * src + dst - 1) // dst
    taps = max(1, min(taps, src - 2))
    starts, rows = [], []
    x = ((dst_pos * inc) >> 7) - ((src_pos * 0x10000) >> 7)  # output centre in source, 1 << 17 a pixel
    for _ in range(dst):
        xx = _div(x - (taps - 2) * (1 << 16), 1 << 17)
        starts.append(xx)
        row = []
        for _j in range(taps):
            d = abs(xx * (1 << 17) - x) << 13
            if inc > 1 << 16:
                d = d * dst // src
            row.append(_div(_bicubic(d), (1 << 54) // fone))
            xx += 1
        rows.append(row)
        x += 2 * inc
    return starts, rows


def _trim(starts: List[int], rows: List[List[int]], fone: int) -> int:
    """Drop near-zero taps from the left (moving the start), count those on the
    right; returns the taps every output still needs."""
    taps = len(rows[0])
    cutoff = REDUCE_CUTOFF * fone
    needed = 0
    for i in range(len(rows) - 1, -1, -1):
        row = rows[i]
        acc = 0
        for _ in range(taps):
            acc += abs(row[0])
            if acc > cutoff:
                break
            if i < len(rows) - 1 and starts[i] >= starts[i + 1]:
                break  # starts must stay increasing
            row[:] = row[1:] + [0]
            starts[i] += 1
        acc, keep = 0, taps
        for j in range(taps - 1, 0, -1):
            acc += abs(row[j])
            if acc > cutoff:
                break
            keep -= 1
        needed = max(needed, keep)
    return needed


def _fold_edges(starts: List[int], rows: List[List[int]], src: int) -> None:
    """Move taps that fall outside the picture onto its first or last pixel."""
    taps = len(rows[0])
    for i, row in enumerate(rows):
        if starts[i] < 0:
            for j in range(1, taps):
                left = max(j + starts[i], 0)
                row[left] += row[j]
                row[j] = 0
            starts[i] = 0
        if starts[i] + taps > src:
            shift = starts[i] + min(taps - src, 0)
            acc = 0
            for j in range(taps - 1, -1, -1):
                if starts[i] + j >= src:
                    acc += row[j]
                    row[j] = 0
            for j in range(taps - 1, -1, -1):
                row[j] = 0 if j < shift else row[j - shift]
            starts[i] -= shift
            row[src - 1 - starts[i]] += acc


def _normalise(rows: List[List[int]], one: int) -> np.ndarray:
    out = np.zeros((len(rows), len(rows[0])), dtype=np.int64)
    for i, row in enumerate(rows):
        total = _div(sum(row) + one // 2, one) or 1
        error = 0
        for j, c in enumerate(row):
            v = c + error
            q = _rounded_div(v, total)
            out[i, j] = q
            error = v - q * total
    return out


def scale_filter(src: int, dst: int, align: int, one: int, src_pos: int = CENTRE,
                 dst_pos: int = CENTRE) -> Filter:
    """libswscale's default (bicubic) filter from ``src`` to ``dst`` samples."""
    if src < 1 or dst < 1:
        raise NotExact(f"cannot scale {src} samples to {dst}")
    inc = ((src << 16) + (dst >> 1)) // dst
    fone = 1 << (54 - min(_log2(src // dst), 8))
    starts, rows = _raw_taps(src, dst, inc, fone, src_pos, dst_pos)
    needed = _trim(starts, rows, fone)
    if needed == 1 and align == 2:
        align = 1
    taps = (needed + align - 1) & ~(align - 1)
    if taps >= MAX_FILTER_TAPS:
        raise NotExact(f"{src} -> {dst} needs {taps} taps: ffmpeg scales in two steps there")
    rows = [(row + [0] * taps)[:taps] for row in rows]
    _fold_edges(starts, rows, src)
    return Filter(np.array(starts, dtype=np.int64), _normalise(rows, one), src)


def _round16(f: int) -> int:
    r = (f + (1 << 15)) >> 16
    return -0x8000 if r < -0x7FFF else min(r, 0x7FFF)


@dataclass(frozen=True)
class ColourTables:
    """The RGB writer's numbers for one colour matrix and range.

    Shared chroma (4:2:0, 4:2:2): channel = ``luma_table[Y + offset]`` with the
    offsets per chroma value in ``r_from_v``, ``g_from_u + g_from_v``,
    ``b_from_u``. Full chroma (4:4:4): 30-bit arithmetic with the ``full_*``
    coefficients."""
    luma_table: np.ndarray  # uint8 [2048]
    r_from_v: np.ndarray    # int64 [256]
    g_from_u: np.ndarray
    g_from_v: np.ndarray
    b_from_u: np.ndarray
    full_y_offset: int
    full_y_coeff: int
    full_v2r: int
    full_v2g: int
    full_u2g: int
    full_u2b: int


def colour_tables(colorspace: int, full_range: bool) -> ColourTables:
    vr, ub, ug, vg = _MATRICES.get(colorspace, _BT601)
    crv, cbu, cgu, cgv = vr, ub, -ug, -vg
    cy, oy = 1 << 16, 0
    if not full_range:
        cy, oy = _div(cy * 255, 219), 16 << 16
    else:
        crv, cbu, cgu, cgv = (_div(x * 224, 255) for x in (crv, cbu, cgu, cgv))
    full = dict(full_y_offset=_round16(oy * (1 << 9)), full_y_coeff=_round16(cy * (1 << 13)),
                full_v2r=_round16(crv * (1 << 13)), full_v2g=_round16(cgv * (1 << 13)),
                full_u2g=_round16(cgu * (1 << 13)), full_u2b=_round16(cbu * (1 << 13)))
    crv, cbu, cgu, cgv = (_div(x * (1 << 16) + 0x8000, max(cy, 1)) for x in (crv, cbu, cgu, cgv))
    start = -(384 << 16) - 512 * cy - oy
    luma = np.array([min(255, max(0, (start + i * cy + 0x8000) >> 16)) for i in range(2048)], dtype=np.uint8)
    base = (384 if full_range else 326) + 512
    levels = range(256)
    return ColourTables(
        luma_table=luma,
        r_from_v=np.array([base - (crv >> 9) + ((c * crv) >> 16) for c in levels], dtype=np.int64),
        g_from_u=np.array([base - (cgu >> 9) + ((c * cgu) >> 16) for c in levels], dtype=np.int64),
        g_from_v=np.array([-(cgv >> 9) + ((c * cgv) >> 16) for c in levels], dtype=np.int64),
        b_from_u=np.array([base - (cbu >> 9) + ((c * cbu) >> 16) for c in levels], dtype=np.int64),
        **full)


@dataclass(frozen=True)
class ScalePlan:
    """Everything needed to turn one video's decoded planes into 48x27 RGB24."""
    width: int
    height: int
    depth: int
    full_chroma: bool        # 4:4:4 input: the per-pixel RGB writer
    luma_h: Filter
    luma_v: Filter
    chroma_h: Filter
    chroma_v: Filter
    tables: ColourTables

    @property
    def intermediate_shift(self) -> int:
        """Right shift after the horizontal pass (to 15 bits)."""
        return 7 if self.depth == 8 else self.depth - 1


_PLANS: Dict[tuple, ScalePlan] = {}


def colorspace_code(name) -> int:
    """ffprobe's ``color_space`` name (or ffmpeg's code) as ffmpeg's code; 2 (unspecified) if unknown."""
    if isinstance(name, int):
        return name
    return COLORSPACE_CODES.get(str(name or "").lower(), 2)


def scale_plan(width: int, height: int, pix_fmt: str, colorspace=2, full_range=None) -> ScalePlan:
    """The plan for one video (cached per size and format). ``full_range``
    None: from the pixel format's name (yuvj* are full range). Raises NotExact
    for what ffmpeg does differently (a cascade for huge sizes, a format
    not listed, a YCgCo matrix)."""
    if pix_fmt not in PIXEL_FORMATS:
        raise NotExact(f"pixel format {pix_fmt} is not handled")
    xs, ys, depth, named_full = PIXEL_FORMATS[pix_fmt]
    code = colorspace_code(colorspace)
    if code == 8:
        raise NotExact("YCgCo colour matrix")
    full = named_full if full_range is None else bool(full_range)
    key = (width, height, xs, ys, depth, code, full)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = _build(width, height, xs, ys, depth, code, full)
    return plan


def _build(width: int, height: int, xs: int, ys: int, depth: int, code: int, full: bool) -> ScalePlan:
    if width < 4 or height < 4:
        raise NotExact(f"{width}x{height} is too small")
    full_chroma = xs == 0 and ys == 0
    cw, ch = -((-width) >> xs), -((-height) >> ys)
    out_cw = OUT_W if full_chroma else OUT_W // 2
    luma_v = scale_filter(height, OUT_H, V_ALIGN, V_ONE)
    chroma_v = scale_filter(ch, OUT_H, V_ALIGN, V_ONE)
    lt, ct = luma_v.coeffs.shape[1], chroma_v.coeffs.shape[1]
    if (lt == 1 and ct <= 2) or (lt == 2 and ct == 2):
        # ffmpeg's 1- and 2-tap vertical writers round differently.
        raise NotExact(f"{width}x{height}: ffmpeg's short vertical filters")
    return ScalePlan(width, height, depth, full_chroma,
                     luma_h=scale_filter(width, OUT_W, H_ALIGN, H_ONE), luma_v=luma_v,
                     chroma_h=scale_filter(cw, out_cw, H_ALIGN, H_ONE), chroma_v=chroma_v,
                     tables=colour_tables(code, full))
