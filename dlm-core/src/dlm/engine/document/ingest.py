"""Images of a document → verified files → blobs.

Checking and storing are separate steps so that a bad document (a missing,
corrupt or out-of-folder image) fails before anything is written to the
store.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from dlm.errors import DocumentError, StoreError
from dlm.format import resolve_document_path
from dlm.format.document import Document, ImageSection
from dlm.records import ImageRef
from dlm.store.blobs import BlobStore, hash_file
from dlm.store.images import verify_image


@attrs.frozen
class CheckedImage:
    section_index: int
    source: str  # as written in the document
    path: Path
    sha256: str
    size: int
    width: int  # as the model sees it (EXIF orientation applied)
    height: int
    notes: tuple[str, ...] = ()  # what using it loses (see ImageInfo.notes)
    missing: bool = False  # not there yet (only with check_images(missing_ok=True))


def check_images(
    doc: Document, *, allow_outside: bool = False, missing_ok: bool = False
) -> list[CheckedImage]:
    """Resolve, decode and hash every image section; raise at the first bad one.

    Errors name the image and the document line that referenced it. With
    ``missing_ok`` (planning: a new document names images not dropped in
    yet) an image that does not exist is returned with ``missing=True``
    and no hash instead; one that exists but cannot be read still raises.
    """
    checked: list[CheckedImage] = []
    for index, section in enumerate(doc.sections):
        if not isinstance(section, ImageSection):
            continue
        path = resolve_document_path(doc, section.path, section.line, allow_outside=allow_outside)
        where = f"from training.sources {section.from_source!r}" if section.from_source else None
        if missing_ok and not path.exists():
            checked.append(
                CheckedImage(
                    section_index=index,
                    source=section.path,
                    path=path,
                    sha256="",
                    size=0,
                    width=0,
                    height=0,
                    missing=True,
                )
            )
            continue
        if not path.exists():  # a directory or a pipe: verify_image says which
            raise DocumentError(
                doc.display_path,
                section.line,
                1,
                f"image not found: {section.path}" + (f" ({where})" if where else ""),
                hint='drop the image at that path, or edit the ::image path="…":: fence',
            )
        try:
            info = verify_image(path)
        except StoreError as exc:
            raise DocumentError(
                doc.display_path,
                section.line,
                1,
                # ImageError's message already starts with the resolved path
                f"{section.path}: {getattr(exc, 'reason', exc.message)}",
                hint="replace it with a readable PNG/JPEG/WebP image, or remove the section",
            ) from exc
        checked.append(
            CheckedImage(
                section_index=index,
                source=section.path,
                path=path,
                sha256=hash_file(path),
                size=path.stat().st_size,
                width=info.width,
                height=info.height,
                notes=info.notes,
            )
        )
    return checked


def store_images(checked: list[CheckedImage], blobs: BlobStore) -> dict[int, ImageRef]:
    """Copy checked images into the blob store (identical bytes stored once).

    A blob already stored is checked first and refused if it was changed
    outside dlm (:class:`~dlm.store.integrity.TamperedError`): training
    never reads a tampered blob. Verified blobs are not copied again.
    """
    from dlm.store.integrity import HashCache, check_blob

    cache = HashCache(blobs.root.parent)
    refs: dict[int, ImageRef] = {}
    for image in checked:
        stored = blobs.path_for(image.sha256)
        check_blob(stored, image.sha256, source=image.source, cache=cache)
        sha = image.sha256 if stored.is_file() else blobs.put_file(image.path)
        refs[image.section_index] = ImageRef(
            sha256=sha, blob_path=blobs.path_for(sha), source=image.source
        )
    cache.save()
    return refs


def refs_without_storing(checked: list[CheckedImage]) -> dict[int, ImageRef]:
    """Image refs pointing at the original files (planning, ``dlm show``: no writes)."""
    return {
        image.section_index: ImageRef(
            sha256=image.sha256, blob_path=image.path, source=image.source
        )
        for image in checked
    }
