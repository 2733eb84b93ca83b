"""portclip for Python: CLIP embeddings, zero-shot classification, scores and
image search on CPU, Vulkan or OpenCL, through the portclip C library
(libportclip.so, loaded with ctypes; nothing is compiled at install time).

    import portclip
    with portclip.Model("clip-vit-base-patch32") as model:
        out = model.score(["cat.jpg"], ["a photo of a cat", "a photo of a dog"])
        print(out.probs)                 # like CLIPModel: logits_per_image.softmax(dim=1)

The library is found through PORTCLIP_LIBRARY (a path), else beside the
package (its installed place), else in the source tree's build/ folder, else
by the dynamic linker. Failures raise portclip.Error (a subclass per status)
with the library's message.
"""

from ._lib import (Error, InvalidArgumentError, OutOfMemoryError, IoError, NotFoundError,
                   BadFormatError, UnsupportedError, LimitError, BadConfigError, BadTensorError,
                   BadTextError, BackendUnavailableError, DeviceLostError, InternalError,
                   library_path, lib as _lib_handle)
from .model import Model, ScoreOutput, read_image
from .index import Index, Hit
from .train import TrainResult, Recall

__version__ = _lib_handle.pclip_version().decode()

__all__ = ["Model", "ScoreOutput", "Index", "Hit", "TrainResult", "Recall", "read_image", "Error",
           "InvalidArgumentError", "OutOfMemoryError", "IoError", "NotFoundError",
           "BadFormatError", "UnsupportedError", "LimitError", "BadConfigError",
           "BadTensorError", "BadTextError", "BackendUnavailableError", "DeviceLostError",
           "InternalError", "library_path", "__version__"]
