"""What a volume file says it holds, against what it holds, before any voxel is read.

ITK believes a header: a file of a few hundred bytes that claims 1000^3 voxels makes it allocate them (12 GB),
and a compressed file cut short is filled up with zeros for integer types without a word. So every file is
checked first: the declared voxels against a sane upper bound, and the declared bytes against the bytes the
file holds (uncompressed formats) or inflates to (gzip, zlib and bzip2 streams, counted without keeping them).
NIfTI (.nii, .nii.gz, .hdr/.img), NRRD (.nrrd, .nhdr with its data file) and MetaImage (.mha, .mhd with its
data file) are checked to the byte; other formats ITK reads get the upper bound only.
"""

from __future__ import annotations

import bz2
import math
import re
import zlib
from pathlib import Path

import SimpleITK as sitk

from ..core.errors import InputError

# 512^3 voxels (0.5 GB as float32): above the largest 3-D MRI series (0.5 mm isotropic 7 T whole-head scans are
# about 400 x 480 x 480); a study of four such volumes already needs several GB while it is prepared.
MAX_VOXELS = 512**3
DEFLATE_MAX_RATIO = 1032  # no deflate stream (gzip, zlib) inflates more than 1032-fold


def check_declared_size(reader: sitk.ImageFileReader, path: Path, what: str) -> None:
    """`reader` has read `path`'s header (ReadImageInformation); refuse it when the voxels it declares are too many
    or are not all in the file."""
    voxels = math.prod(reader.GetSize())
    if voxels > MAX_VOXELS:
        raise InputError(f"{what} declares {'x'.join(map(str, reader.GetSize()))} voxels, more than the {MAX_VOXELS} "
                         "(512^3) a volume may have")
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz", ".hdr", ".img", ".hdr.gz", ".img.gz")):
        _check_nifti(path, what)
    elif name.endswith((".nrrd", ".nhdr")):
        _check_nrrd(path, what)
    elif name.endswith((".mha", ".mhd")):
        _check_metaimage(path, what)


def require_spacing(spacing: tuple[float, ...], what: str) -> None:
    """Every voxel spacing a positive number: ITK reads a NIfTI spacing of 0 as 1 mm, a guess; others pass 0 on."""
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"{what} has voxel spacing {tuple(float(s) for s in spacing)} mm; every spacing must be a positive number")


def _short(what: str, declared: int, held: int, unit: str = "bytes") -> InputError:
    return InputError(f"{what} is cut short or damaged: by its header it holds {declared} {unit}, and it holds {held}")


def _require_bytes(data_file: Path, offset: int, needed: int, encoding: str, what: str) -> None:
    """`needed` voxel bytes from `offset` of `data_file`, stored raw or as a gzip, zlib or bzip2 stream."""
    if not data_file.is_file():
        raise InputError(f"{what}: its voxel file '{data_file}' does not exist")
    size = data_file.stat().st_size
    if encoding == "raw":
        if size - offset < needed:
            raise _short(what, needed, max(size - offset, 0))
        return
    if encoding in ("gzip", "zlib") and needed > DEFLATE_MAX_RATIO * (size - offset) + 1024:
        raise _short(what, needed, size - offset, "bytes (compressed)")
    with open(data_file, "rb") as handle:
        handle.seek(offset)
        try:
            held = _bz2_length(handle, needed) if encoding == "bzip2" else _inflated_length(handle, needed, encoding)
        except (OSError, EOFError, zlib.error, ValueError) as error:
            raise InputError(f"{what} is damaged: its {encoding} stream cannot be read ({error})") from None
    if held < needed:
        raise _short(what, needed, held)


def _inflated_length(handle, needed: int, encoding: str) -> int:
    """Bytes a gzip or zlib stream inflates to, counted up to `needed` in blocks (memory stays small)."""
    inflater = zlib.decompressobj(zlib.MAX_WBITS | (16 if encoding == "gzip" else 0))
    count, pending = 0, b""
    while count < needed:
        if inflater.eof:  # a gzip file may hold several members, one after another
            pending = inflater.unused_data
            if encoding != "gzip" or not pending:
                break
            inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        pending = pending or handle.read(1 << 16)
        if not pending:
            break  # the stream stops before its end: the file was cut short
        count += len(inflater.decompress(pending, 1 << 20))
        pending = inflater.unconsumed_tail
    return count


def _bz2_length(handle, needed: int) -> int:
    count = 0
    with bz2.BZ2File(handle) as stream:
        while count < needed:
            block = stream.read(min(1 << 20, needed - count))
            if not block:
                break
            count += len(block)
    return count


def _check_nifti(path: Path, what: str) -> None:
    """The header as stored: nibabel.load would repair a zero spacing to 1 mm (as ITK does) and say so on stderr."""
    import nibabel
    from nibabel.openers import ImageOpener

    name = path.name.lower()
    pair = name.endswith((".hdr", ".hdr.gz", ".img", ".img.gz"))  # Analyze-style pair: header in .hdr, voxels in .img
    header_file = path.with_name(re.sub(r"\.img(\.gz)?$", r".hdr\1", path.name, flags=re.IGNORECASE)) if pair else path
    image_file = path.with_name(re.sub(r"\.hdr(\.gz)?$", r".img\1", path.name, flags=re.IGNORECASE)) if pair else path
    try:
        with ImageOpener(str(header_file)) as handle:
            size_field = handle.read(4)  # 348 (NIfTI-1, Analyze) or 540 (NIfTI-2), in either byte order
            kinds = [k for k in (nibabel.Nifti1Header, nibabel.Nifti2Header)
                     if len(size_field) == 4 and k.sizeof_hdr in (int.from_bytes(size_field, "little"), int.from_bytes(size_field, "big"))]
            if not kinds:
                raise ValueError("not a NIfTI or Analyze header")
            handle.seek(0)
            header = kinds[0].from_fileobj(handle, check=False)
        shape, itemsize, offset = header.get_data_shape(), header.get_data_dtype().itemsize, int(header.get_data_offset())
    except (OSError, EOFError, ValueError, zlib.error, nibabel.spatialimages.HeaderDataError) as error:
        raise InputError(f"{what} has a damaged NIfTI header ({type(error).__name__} {error})".rstrip()) from None
    require_spacing(tuple(header["pixdim"][1 : 1 + min(3, len(shape))]), what)
    needed = math.prod(int(n) for n in shape) * int(itemsize)
    if not pair:  # one file: the voxels follow the header inside the (possibly compressed) stream
        needed, offset = needed + offset, 0
    _require_bytes(image_file, offset, needed, "gzip" if image_file.name.lower().endswith(".gz") else "raw", what)


# Bytes per value of NRRD's type names (the NRRD0005 specification) and of MetaImage's element types.
_NRRD_BYTES = {**dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"), 1),
               **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort",
                                "unsigned short", "unsigned short int", "uint16", "uint16_t"), 2),
               **dict.fromkeys(("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t", "float"), 4),
               **dict.fromkeys(("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
                                "int64_t", "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t",
                                "double"), 8)}
_META_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4, "MET_LONG": 4,
               "MET_ULONG": 4, "MET_FLOAT": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_DOUBLE": 8}


def _header_lines(path: Path, what: str, stop: re.Pattern) -> tuple[dict[str, str], int]:
    """`key: value` or `Key = Value` lines of a text header up to the line matching `stop` (included); returns the
    fields (keys lower-case) and the offset just after that line, where attached voxels start."""
    fields: dict[str, str] = {}
    with open(path, "rb") as handle:
        while True:
            line = handle.readline(1 << 16)
            if not line:
                return fields, handle.tell()  # a detached header ends with the file
            text = line.decode("latin-1").strip()
            match = re.match(r"([^:=#]+?)\s*(?::=|:|=)\s*(.*)", text)
            if match:
                fields[match.group(1).strip().lower()] = match.group(2).strip()
            if stop.match(text) or handle.tell() > (1 << 20):
                return fields, handle.tell()


def _check_nrrd(path: Path, what: str) -> None:
    fields, offset = _header_lines(path, what, re.compile(r"\Z"))  # the header ends at its first empty line
    encoding = {"raw": "raw", "gz": "gzip", "gzip": "gzip", "bz2": "bzip2", "bzip2": "bzip2"}.get(fields.get("encoding", "raw").lower())
    bytes_per_value = _NRRD_BYTES.get(fields.get("type", "").lower())
    data_file = fields.get("data file", fields.get("datafile"))
    if encoding is None or bytes_per_value is None or "sizes" not in fields or (
            data_file is not None and (data_file.upper().startswith("LIST") or " " in data_file or "%" in data_file)):
        return  # text encodings and lists of data files: the voxel limit alone applies
    try:
        needed = math.prod(int(n) for n in fields["sizes"].split()) * bytes_per_value
        byte_skip = int(fields.get("byte skip", fields.get("byteskip", "0")))
    except ValueError:
        raise InputError(f"{what} has a damaged NRRD header (sizes {fields['sizes']!r})") from None
    if data_file is not None:
        path, offset = path.parent / data_file, 0
    if byte_skip == -1 and encoding == "raw":  # the voxels are the last bytes of the file
        offset = max(path.stat().st_size - needed, offset) if path.is_file() else 0
    elif encoding == "raw":
        offset += max(byte_skip, 0)
    else:
        needed += max(byte_skip, 0)  # compressed: bytes skipped are counted in the inflated stream
    _require_bytes(path, offset, needed, encoding, what)


def _check_metaimage(path: Path, what: str) -> None:
    fields, offset = _header_lines(path, what, re.compile(r"ElementDataFile\b", re.IGNORECASE))
    data_file = fields.get("elementdatafile", "")
    bytes_per_value = _META_BYTES.get(fields.get("elementtype", "").upper())
    if (bytes_per_value is None or fields.get("binarydata", "True").lower() == "false" or not data_file
            or data_file.upper().startswith("LIST") or "%" in data_file or " " in data_file):
        return  # ASCII voxels and lists of slice files: the voxel limit alone applies
    try:
        needed = (math.prod(int(n) for n in fields.get("dimsize", "").split())
                  * int(fields.get("elementnumberofchannels", "1")) * bytes_per_value)
        header_size = int(fields.get("headersize", "0"))
    except ValueError:
        raise InputError(f"{what} has a damaged MetaImage header (DimSize {fields.get('dimsize')!r})") from None
    if data_file.upper() != "LOCAL":
        path, offset = path.parent / data_file, max(header_size, 0)
    compressed = fields.get("compresseddata", "False").lower() == "true"
    if header_size == -1 and not compressed:
        offset = max(path.stat().st_size - needed, 0) if path.is_file() else 0
    _require_bytes(path, offset, needed, "zlib" if compressed else "raw", what)
