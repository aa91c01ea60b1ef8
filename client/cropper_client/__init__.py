"""A Python client for the FathomNet Cropper service: crops of FathomNet images by box or annotation.

    from cropper_client import Cropper, crop_url

    with Cropper("http://127.0.0.1:8080") as cropper:
        crop = cropper.crop("9e140d51-2a43-5870-9337-eb66c5a4de6d", 100, 100, 405, 400, width=224)
        cropper.download(crop, "crop.webp")

It depends on requests only (tqdm, optionally, for the command line's progress bar).
"""

from .client import (
    DEFAULT_URL,
    Annotation,
    BusyError,
    ConceptPage,
    ConnectionFailedError,
    CropFailure,
    CropOptions,
    Cropper,
    CropperError,
    CropRequest,
    CropResult,
    ImageBoxes,
    InsufficientStorageError,
    InvalidRequestError,
    NotFoundError,
    RequestTimeoutError,
    UpstreamError,
    __version__,
)
from .urls import crop_url

__all__ = [
    "DEFAULT_URL", "Annotation", "BusyError", "ConceptPage", "ConnectionFailedError", "CropFailure", "CropOptions",
    "CropRequest", "CropResult", "Cropper", "CropperError", "ImageBoxes", "InsufficientStorageError",
    "InvalidRequestError", "NotFoundError", "RequestTimeoutError", "UpstreamError", "__version__", "crop_url",
]
