"""Image and video datasets (folders on disk and embedded defaults) and step-indexed batch sampling."""
from .embedded import EmbeddedClips, EmbeddedPhotos
from .errors import DataError
from .image_folder import ImageFolder
from .keys import SampleKey
from .open import open_dataset
from .sampling import StepSchedule, step_loader
from .video_folder import VideoFolder

__all__ = ["DataError", "EmbeddedClips", "EmbeddedPhotos", "ImageFolder", "SampleKey", "StepSchedule",
           "VideoFolder", "open_dataset", "step_loader"]
