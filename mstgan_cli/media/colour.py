"""Colour description of a video stream (matrix, range, primaries, transfer) and its spellings.

The same facts are spelled three ways: ffprobe names (``bt709``, ``tv``), FFmpeg ``scale`` filter
option values (``in_color_matrix=bt709``), and libav enum integers (``AVCOL_SPC_BT709 == 1``) that
PyAV's encoder and reformatter take. This module keeps them in one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

# libav AVColorSpace / AVColorPrimaries / AVColorTransferCharacteristic values, keyed by the names
# ffprobe prints (av_color_*_name).
MATRIX_IDS = {"rgb": 0, "gbr": 0, "bt709": 1, "fcc": 4, "bt470bg": 5, "smpte170m": 6,
              "smpte240m": 7, "ycgco": 8, "bt2020nc": 9, "bt2020c": 10}
PRIMARIES_IDS = {"bt709": 1, "bt470m": 4, "bt470bg": 5, "smpte170m": 6, "smpte240m": 7,
                 "film": 8, "bt2020": 9, "smpte428": 10, "smpte431": 11, "smpte432": 12,
                 "ebu3213": 22}
TRANSFER_IDS = {"bt709": 1, "gamma22": 4, "gamma28": 5, "smpte170m": 6, "smpte240m": 7,
                "linear": 8, "log100": 9, "log316": 10, "iec61966-2-4": 11, "bt1361e": 12,
                "iec61966-2-1": 13, "bt2020-10": 14, "bt2020-12": 15, "smpte2084": 16,
                "smpte428": 17, "arib-std-b67": 18}
RANGE_IDS = {"tv": 1, "pc": 2}

# Which YCbCr<->RGB coefficients a matrix name uses, as the `scale` filter spells them.
_SCALE_MATRIX = {"bt709": "bt709", "fcc": "fcc", "bt470bg": "bt601", "smpte170m": "bt601",
                 "smpte240m": "smpte240m", "bt2020nc": "bt2020", "bt2020c": "bt2020"}
# ... and as PyAV's Colorspace enum spells them (SWS_CS_* constants).
_SWS_MATRIX = {"bt709": "ITU709", "fcc": "FCC", "bt470bg": "ITU601", "smpte170m": "SMPTE170M",
               "smpte240m": "SMPTE240M", "bt2020nc": "BT2020", "bt2020c": "BT2020"}


def _known(value: str | None, table: dict[str, int]) -> str | None:
    return value if value in table else None


@dataclass(frozen=True)
class Colour:
    """How a stream's samples map to colours. ``None`` means the source did not say."""

    matrix: str | None = None      # ffprobe color_space, e.g. "bt709", "smpte170m", "bt2020nc"
    range: str | None = None       # "tv" (limited) or "pc" (full)
    primaries: str | None = None   # e.g. "bt709", "bt2020"
    transfer: str | None = None    # e.g. "bt709", "smpte2084"

    @classmethod
    def from_probe(cls, stream: dict[str, object]) -> Colour:
        """Build from an ffprobe stream dict, dropping 'unknown'/'reserved' values."""
        return cls(matrix=_known(str(stream.get("color_space")), MATRIX_IDS),
                   range=_known(str(stream.get("color_range")), RANGE_IDS),
                   primaries=_known(str(stream.get("color_primaries")), PRIMARIES_IDS),
                   transfer=_known(str(stream.get("color_transfer")), TRANSFER_IDS))

    @property
    def is_rgb(self) -> bool:
        return self.matrix in ("rgb", "gbr")

    def resolved(self, height: int) -> Colour:
        """Fill what the source left unsaid the way players guess: BT.709 from 720 lines up,
        else BT.601 (SMPTE 170M); limited range. Primaries/transfer stay unsaid if unknown."""
        matrix = self.matrix if self.matrix and not self.is_rgb else (
            "bt709" if height >= 720 else "smpte170m")
        return Colour(matrix, self.range or "tv", self.primaries, self.transfer)

    # Spellings -------------------------------------------------------------------------------
    @property
    def scale_matrix(self) -> str:
        """The ``scale`` filter's ``in_color_matrix`` value (call on a resolved colour)."""
        return _SCALE_MATRIX.get(self.matrix or "", "bt709")

    @property
    def scale_range(self) -> str:
        """The ``scale`` filter's ``in_range`` value."""
        return "full" if self.range == "pc" else "limited"

    @property
    def sws_matrix(self) -> str:
        """PyAV ``Colorspace`` member name for the reformatter."""
        return _SWS_MATRIX.get(self.matrix or "", "ITU709")

    @property
    def sws_range(self) -> str:
        """PyAV ``ColorRange`` member name for the reformatter."""
        return "JPEG" if self.range == "pc" else "MPEG"

    def ids(self) -> dict[str, int]:
        """libav enum values for the encoder (unsaid -> 2, 'unspecified')."""
        return {"colorspace": MATRIX_IDS.get(self.matrix or "", 2),
                "color_range": RANGE_IDS.get(self.range or "", 0),
                "color_primaries": PRIMARIES_IDS.get(self.primaries or "", 2),
                "color_trc": TRANSFER_IDS.get(self.transfer or "", 2)}


# Side data types as :func:`mstgan_cli.media.libav.describe` (and ffprobe) name them.
MASTERING = "Mastering display metadata"
LIGHT_LEVEL = "Content light level metadata"
_CHROMA_UNIT, _LUMA_UNIT = 50000, 10000  # x265/HEVC SEI units: 0.00002 (CIE xy), 0.0001 cd/m2


def _units(text: object, unit: int) -> int | None:
    try:
        value = Fraction(str(text))
    except (ValueError, ZeroDivisionError):
        return None
    return round(value * unit) if value >= 0 else None


@dataclass(frozen=True)
class HdrMetadata:
    """Static HDR metadata of a stream: the mastering display's colour volume (SMPTE ST 2086)
    and the content light level (CTA-861.3), each ``None`` where the source gave none.

    ``mastering`` is in the order and units of x265's ``master-display`` (and HEVC's SEI):
    G, B, R and white point as CIE 1931 x, y in 0.00002 steps, then the maximum and minimum
    luminance in 0.0001 cd/m2 steps. ``light`` is (MaxCLL, MaxFALL) in cd/m2."""

    mastering: tuple[int, ...] | None = None
    light: tuple[int, int] | None = None

    @classmethod
    def from_side_data(cls, side_data: list[dict[str, object]] | None) -> HdrMetadata | None:
        """From a stream's ``side_data_list`` (ffprobe spellings); None when it has neither.
        A mastering display without both primaries and luminance is left out (the encoders
        take only the whole description)."""
        mastering: tuple[int, ...] | None = None
        light: tuple[int, int] | None = None
        for item in side_data or []:
            kind = item.get("side_data_type")
            if kind == MASTERING and mastering is None:
                values = [_units(item.get(f"{c}_{xy}"), _CHROMA_UNIT)
                          for c in ("green", "blue", "red", "white_point") for xy in "xy"]
                values += [_units(item.get(k), _LUMA_UNIT) for k in ("max_luminance", "min_luminance")]
                if all(v is not None for v in values):
                    mastering = tuple(int(v) for v in values if v is not None)
            elif kind == LIGHT_LEVEL and light is None:
                try:
                    cll, fall = int(str(item.get("max_content"))), int(str(item.get("max_average")))
                except ValueError:
                    continue
                if cll > 0 or fall > 0:
                    light = (cll, fall)
        return cls(mastering, light) if mastering or light else None

    # Spellings -------------------------------------------------------------------------------
    @property
    def master_display(self) -> str | None:
        """x265's ``master-display`` (x264's ``mastering-display``, FFmpeg's
        ``-mastering_display``): ``G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)``."""
        if self.mastering is None:
            return None
        m = self.mastering
        return "G({},{})B({},{})R({},{})WP({},{})L({},{})".format(*m)

    @property
    def max_cll(self) -> str | None:
        """x265's ``max-cll`` (x264's ``cll``, FFmpeg's ``-content_light``): ``MaxCLL,MaxFALL``."""
        return None if self.light is None else f"{self.light[0]},{self.light[1]}"

    @property
    def svt_master_display(self) -> str | None:
        """SVT-AV1's ``mastering-display``: the same order, in plain numbers (CIE xy, cd/m2)."""
        if self.mastering is None:
            return None
        m = self.mastering
        xy = [f"{v / _CHROMA_UNIT:.5f}".rstrip("0").rstrip(".") for v in m[:8]]
        lum = [f"{v / _LUMA_UNIT:.4f}".rstrip("0").rstrip(".") for v in m[8:]]
        return "G({},{})B({},{})R({},{})WP({},{})L({},{})".format(*xy, *lum)
