"""A Python client for the FathomNet Cropper service: crops of FathomNet images by box or annotation,
and training sets (data-set jobs) made of them.

    from cropper_client import Cropper, crop_url

    with Cropper("http://127.0.0.1:8080") as cropper:
        crop = cropper.crop("9e140d51-2a43-5870-9337-eb66c5a4de6d", 100, 100, 405, 400, width=224)
        cropper.download(crop, "crop.webp")
        cropper.dataset(["Atolla"], descendants=True, width=224).wait().download("atolla")

It depends on requests only (tqdm, optionally, for progress bars).
"""

from .client import (
    DEFAULT_URL,
    Annotation,
    ConceptPage,
    CropFailure,
    CropOptions,
    Cropper,
    CropRequest,
    CropResult,
    ImageBoxes,
    __version__,
)
from .datasets import DatasetFile, DatasetJob
from .errors import (
    BusyError,
    ConnectionFailedError,
    CropperError,
    DatasetFileError,
    GoneError,
    InsufficientStorageError,
    InvalidRequestError,
    NotFoundError,
    RequestTimeoutError,
    UpstreamError,
)
from .urls import crop_url

__all__ = [
    "DEFAULT_URL", "Annotation", "BusyError", "ConceptPage", "ConnectionFailedError", "CropFailure", "CropOptions",
    "CropRequest", "CropResult", "Cropper", "CropperError", "DatasetFile", "DatasetFileError", "DatasetJob",
    "GoneError", "ImageBoxes", "InsufficientStorageError", "InvalidRequestError", "NotFoundError",
    "RequestTimeoutError", "UpstreamError", "__version__", "crop_url",
]
