"""DICOM whole-slide images (VL Whole Slide Microscopy) through wsidicom.

A file is opened on its own; a folder is opened as one slide made of all its
instances (levels, labels and overviews), as scanners write them. Pixels reach
libvips through the lazy bridge, one DICOM frame region at a time.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pyvips

from tilewright.config import Settings
from tilewright.errors import InputError
from tilewright.formats.base import Level, SlideReader
from tilewright.formats.registry import is_dicom, read_head

log = logging.getLogger(__name__)

_WSI_SOP_CLASS = b"1.2.840.10008.5.1.4.1.1.77.1.6"


class DicomReader(SlideReader):
    name = "dicom"
    suffixes = (".dcm", ".dicom")

    @classmethod
    def check(cls, path: Path, head: bytes) -> bool:
        if path.is_dir():
            return any(_is_dicom_file(p) for p in sorted(path.iterdir())[:20] if p.is_file())
        return is_dicom(head) and _WSI_SOP_CLASS in head

    def __init__(self, path: Path, settings: Settings | None = None) -> None:
        super().__init__(path, settings)
        from wsidicom import WsiDicom  # imported here: it is slow to import and only DICOM needs it

        files = sorted(p for p in self.path.iterdir() if p.is_file()) if self.path.is_dir() else [self.path]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._wsi = WsiDicom.open(files)
        except Exception as exc:
            raise InputError(f"not a readable DICOM whole-slide image: {exc}", path=self.path) from exc
        wsi = self._wsi
        self.format = "dicom"
        self._dicom_levels = sorted(wsi.levels, key=lambda lvl: lvl.level)
        base = self._dicom_levels[0]
        self.levels = [
            Level(lvl.size.width, lvl.size.height, base.size.width / lvl.size.width) for lvl in self._dicom_levels
        ]
        self.tile_size = (base.tile_size.width, base.tile_size.height)
        self.tiled = True
        try:
            self.mpp = (float(base.mpp.width), float(base.mpp.height))
        except (AttributeError, TypeError, ValueError):
            self.mpp = None
        self.associated_names = (["label"] if wsi.labels else []) + (["macro"] if wsi.overviews else [])
        self.properties = _dicom_properties(wsi)
        self.vendor = self.properties.get("dicom.Manufacturer") or None
        samples = int(self.properties.get("dicom.SamplesPerPixel", "3") or 3)
        self.bands = 1 if samples == 1 else 3

    def _read(self, level: int):
        dicom_level = self._dicom_levels[level].level
        bands = self.bands

        def read_tile(x: int, y: int, w: int, h: int) -> np.ndarray:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                region = self._wsi.read_region((x, y), dicom_level, (w, h))
            if bands == 1:
                array = np.asarray(region.convert("L"))
            else:
                array = np.asarray(region.convert("RGB"))
            return array

        return read_tile

    def _level_image(self, level: int, sequential: bool) -> pyvips.Image:
        lvl = self.levels[level]
        return self._bridged(lvl.width, lvl.height, self.bands, self._read(level))

    def associated(self, name: str) -> pyvips.Image:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if name == "label" and self._wsi.labels:
                image = self._wsi.read_label()
            elif name == "macro" and self._wsi.overviews:
                image = self._wsi.read_overview()
            else:
                raise KeyError(name)
        return pyvips.Image.new_from_array(np.asarray(image.convert("RGB")), interpretation="srgb")

    def close(self) -> None:
        self._wsi.close()


def _is_dicom_file(path: Path) -> bool:
    """A file of a slide folder is DICOM; one that cannot be read is not (the others may be)."""
    try:
        return is_dicom(read_head(path))
    except OSError:
        return False


def _dicom_properties(wsi) -> dict[str, str]:
    props: dict[str, str] = {}
    try:
        dataset = wsi.levels[0].datasets[0]
    except (AttributeError, IndexError):
        return props
    for keyword in (
        "Manufacturer",
        "ManufacturerModelName",
        "SeriesInstanceUID",
        "StudyInstanceUID",
        "ContainerIdentifier",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "TotalPixelMatrixColumns",
        "TotalPixelMatrixRows",
        "Rows",
        "Columns",
    ):
        value = getattr(dataset, keyword, None)
        if value is not None:
            props[f"dicom.{keyword}"] = str(value)
    try:
        props["dicom.TransferSyntaxUID"] = str(dataset.file_meta.TransferSyntaxUID)
    except AttributeError:
        pass
    return props
