"""Tests for the model registry and every architecture in it (CPU, tiny seeded inputs)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file
from st_helpers import smallest_length_ending_in, with_header_length
from torch import nn

from depth_estimator_ros.models import (
    ARCHITECTURES,
    CANONICAL_FOCAL,
    ENCODER_WEIGHTS,
    SCOPES,
    DepthModel,
    TrainingDefaults,
    build_model,
    freeze_batchnorm,
    load_checkpoint,
    save_checkpoint,
)

SIDE = 64
# The fully connected head is sized by input_size; build it for the tiny test input.
SMALL = {"vgg16_coarse": {"input_size": (SIDE, SIDE)}}


def _build(arch: str, **kwargs) -> DepthModel:
    torch.manual_seed(0)
    return build_model(arch, **{**SMALL.get(arch, {}), **kwargs})


def _rgb(batch: int = 2, height: int = SIDE, width: int = SIDE) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(1))


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def test_registry_lists_the_four_architectures_default_first():
    assert ARCHITECTURES == ("fast", "vgg16_coarse", "vgg16_coarse_conv", "densenet201")


def test_unknown_architecture_names_the_allowed_ones():
    with pytest.raises(ValueError) as err:
        build_model("resnet9000")
    for arch in ARCHITECTURES:
        assert arch in str(err.value)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_forward_backward_shape_range_and_gradient_flow(arch):
    model = _build(arch).train()
    rgb = _rgb()
    depth = model(rgb)
    assert depth.shape == (2, 1, SIDE, SIDE)
    assert depth.dtype == torch.float32
    assert torch.isfinite(depth).all()
    assert depth.min() >= model.min_depth and depth.max() <= model.max_depth

    target = torch.full_like(depth, 3.0)
    (depth - target).abs().mean().backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert trainable
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
    assert sum(float(p.grad.abs().sum()) for p in trainable) > 0
    assert all(p.grad is None for p in frozen)


@pytest.mark.parametrize("arch", [a for a in ARCHITECTURES if a != "vgg16_coarse"])
def test_output_matches_any_input_size(arch):
    model = _build(arch).eval()
    with torch.inference_mode():
        depth = model(_rgb(1, 70, 90))
    assert depth.shape == (1, 1, 70, 90)
    assert torch.isfinite(depth).all()
    assert depth.min() >= model.min_depth and depth.max() <= model.max_depth


def test_fully_connected_model_refuses_other_sizes():
    model = _build("vgg16_coarse").eval()
    with pytest.raises(ValueError, match=r"needs input of size \(64, 64\)"):
        model(_rgb(1, 64, 96))


@pytest.mark.parametrize(
    ("rgb", "error"),
    [
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError),
        (torch.zeros(3, 64, 64), ValueError),
        (torch.zeros(1, 1, 64, 64), ValueError),
        (torch.zeros(1, 3, 16, 64), ValueError),
    ],
)
def test_bad_input_is_refused(rgb, error):
    with pytest.raises(error):
        _build("fast")(rgb)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_set_trainable_scopes(arch):
    model = _build(arch)
    all_params = list(model.parameters())
    trained = {}
    for scope in SCOPES:
        returned = model.set_trainable(scope)
        assert [id(p) for p in returned] == [id(p) for p in all_params if p.requires_grad]
        trained[scope] = _ids(returned)
    assert trained["decoder"] == _ids(model.decoder.parameters())
    assert trained["decoder"] < trained["decoder+tail"] < trained["all"] == _ids(all_params)
    with pytest.raises(ValueError, match="decoder\\+tail"):
        model.set_trainable("encoder")


def _conv_weights_trained(module: nn.Module) -> int:
    return sum(m.weight.requires_grad for m in module.modules() if isinstance(m, nn.Conv2d))


def test_default_scopes_follow_the_seeds():
    assert all(p.requires_grad for p in _build("fast").parameters())
    densenet = _build("densenet201")
    assert not any(p.requires_grad for p in densenet.encoder.parameters())
    assert all(p.requires_grad for p in densenet.decoder.parameters())
    for arch in ("vgg16_coarse", "vgg16_coarse_conv"):
        vgg = _build(arch)
        assert _conv_weights_trained(vgg.encoder) == 5  # conv4_2 .. conv5_3
        convs = [m for m in vgg.encoder.modules() if isinstance(m, nn.Conv2d)]
        assert [c.weight.requires_grad for c in convs] == [False] * 8 + [True] * 5
        assert all(p.requires_grad for p in vgg.decoder.parameters())


def test_frozen_encoder_keeps_its_batchnorm_statistics():
    model = _build("densenet201").train()
    norm = model.encoder.norm5
    before = norm.running_mean.clone()
    model(_rgb())
    assert not norm.training
    assert torch.equal(norm.running_mean, before)
    decoder_bn = model.decoder[0][2]
    assert decoder_bn.training and decoder_bn.num_batches_tracked.item() == 1


def test_freeze_batchnorm_keeps_statistics_but_trains_affine_parameters():
    model = _build("fast").train()
    count = freeze_batchnorm(model)
    assert count == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 0
    model.train()  # the setting survives later train() calls
    bn = model.decoder.bottleneck[1]
    before = bn.running_mean.clone()
    model(_rgb()).mean().backward()
    assert torch.equal(bn.running_mean, before)
    assert bn.weight.grad is not None and bn.weight.grad.abs().sum() > 0

    freeze_batchnorm(model, frozen=False)
    model(_rgb())
    assert not torch.equal(bn.running_mean, before)
    with pytest.raises(TypeError):
        freeze_batchnorm(nn.BatchNorm2d(3))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_config_is_json_and_rebuilds_the_same_architecture(arch):
    model = _build(arch, max_depth=8.0)
    config = json.loads(json.dumps(model.config))
    rebuilt = build_model(arch, **config)
    assert rebuilt.arch == model.arch == arch
    assert rebuilt.config == model.config
    assert rebuilt.input_size == model.input_size and rebuilt.max_depth == 8.0
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


def test_training_defaults_follow_the_seeds():
    densenet = _build("densenet201")
    assert densenet.defaults == TrainingDefaults(lr=1e-4, weight_decay=1e-4, loss="l1", micro_batch=8,
                                                 accumulation=8)
    assert densenet.defaults.effective_batch == 64
    assert (densenet.min_depth, densenet.max_depth) == (0.0, 10.0)
    for arch in ("vgg16_coarse", "vgg16_coarse_conv"):
        d = _build(arch).defaults
        assert (d.loss, d.lr, d.head_l2, d.micro_batch * d.accumulation) == ("rmse", 1e-5, 0.02, 10)
    assert _build("fast").defaults.loss == "l1"
    with pytest.raises(ValueError, match="'l1', 'rmse'"):
        TrainingDefaults(lr=1e-3, weight_decay=0.0, loss="huber", micro_batch=1, accumulation=1)


def test_regularized_parameters_are_the_seed_heads():
    fc = _build("vgg16_coarse")
    assert [tuple(p.shape) for p in fc.regularized_parameters()] == [(4096, 512 * 2 * 2), (576, 4096)]
    conv = _build("vgg16_coarse_conv")
    assert [tuple(p.shape) for p in conv.regularized_parameters()] == [(1, 512, 3, 3)]
    assert _build("fast").regularized_parameters() == []
    assert _build("densenet201").regularized_parameters() == []


def test_seed1_parameter_counts_match_the_paper():
    # Figure 8 of seed 1: 119,839,104 parameters with FC layers, 14,719,297 with the conv head.
    with torch.device("meta"):
        counts = {arch: sum(p.numel() for p in build_model(arch).parameters())
                  for arch in ("vgg16_coarse", "vgg16_coarse_conv")}
    assert counts == {"vgg16_coarse": 119_839_104, "vgg16_coarse_conv": 14_719_297}


def test_seed1_conv_head_predicts_24x24_from_224():
    model = _build("vgg16_coarse_conv").eval()
    with torch.inference_mode():
        assert model.decoder(torch.zeros(1, 512, 14, 14)).shape == (1, 1, 24, 24)


def test_seed0_decoder_channels_and_initialisation():
    model = _build("densenet201")
    convs = [m for m in model.decoder.modules() if isinstance(m, nn.Conv2d)]
    assert [convs[0].in_channels] + [c.out_channels for c in convs] == [
        1920, 1024, 1024, 512, 512, 256, 256, 128, 128, 64, 1]
    for conv in convs[:4]:  # big enough for a tight estimate of the std
        expected = 1.0 / math.sqrt(5 * conv.in_channels)
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.02)
        assert conv.weight.mean().item() == pytest.approx(0.0, abs=0.02 * expected)
    assert all(torch.count_nonzero(c.bias) == 0 for c in convs)
    ups = [m for m in model.decoder.modules() if isinstance(m, nn.Upsample)]
    assert [(u.scale_factor, u.mode) for u in ups] == [(2.0, "nearest")] * 5
    assert not isinstance(list(model.decoder[-1])[-1], (nn.BatchNorm2d, nn.ReLU))


def test_fast_model_with_the_large_backbone():
    model = _build("fast", backbone="mobilenet_v3_large").train()
    depth = model(_rgb())
    assert depth.shape == (2, 1, SIDE, SIDE) and torch.isfinite(depth).all()
    assert model.config["backbone"] == "mobilenet_v3_large"
    assert build_model("fast", **model.config).encoder.channels == (16, 24, 40, 112, 960)
    with pytest.raises(ValueError, match="mobilenet_v3_small"):
        build_model("fast", backbone="resnet18")


def test_linear_outputs_are_clamped_with_straight_through_gradients():
    model = _build("vgg16_coarse_conv")
    raw = torch.tensor([-1.0, 5.0, 12.0], requires_grad=True)
    bounded = model.bound_depth(raw)
    assert bounded.tolist() == [0.0, 5.0, 10.0]
    bounded.sum().backward()
    assert raw.grad.tolist() == [1.0, 1.0, 1.0]  # pixels outside the range keep learning


def test_fast_model_starts_unsaturated_near_room_depth():
    model = _build("fast").eval()
    with torch.inference_mode():
        depth = model(_rgb())
    assert 2.0 < depth.min() and depth.max() < 3.0


def test_fast_model_learns_from_scratch():
    model = _build("fast").train()
    smooth = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    rgb = nn.functional.interpolate(smooth, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    target = 1.0 + 5.0 * (1.0 - rgb.mean(1, keepdim=True))  # brighter is nearer, 1-6 m
    optimizer = torch.optim.Adam(model.parameters(), lr=model.defaults.lr)
    losses = []
    for _ in range(15):
        loss = (model(rgb) - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 0.8  # starts at the 2.5 m prior, not at the answer
    assert losses[-1] < 0.3 * losses[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_depth": 5.0, "max_depth": 1.0}, "min_depth < max_depth"),
        ({"min_depth": 0.0}, "min_depth must be > 0"),
        ({"input_size": (16, 64)}, "input_size"),
        ({"input_size": 224}, "input_size"),
        ({"encoder_weights": "coco"}, "'imagenet', None"),
    ],
)
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        build_model("fast", **kwargs)
    with pytest.raises(TypeError, match="dropout"):
        build_model("fast", dropout=0.1)


def _legacy_densenet_keys(state: dict) -> dict:
    # torchvision's published densenet201 file still names "norm1" as "norm.1" etc.
    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))([12])\.(weight|bias|running_mean|running_var)$")
    return {pattern.sub(r"\1.\2.\3", key): value for key, value in state.items()}


WEIGHTS = {
    "fast": ({}, torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1, torchvision.models.mobilenet_v2),
    "fast-small": ({"backbone": "mobilenet_v3_small"}, torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1,
                   torchvision.models.mobilenet_v3_small),
    "fast-large": ({"backbone": "mobilenet_v3_large"}, torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V2,
                   torchvision.models.mobilenet_v3_large),
    "vgg16_coarse_conv": ({}, torchvision.models.VGG16_Weights.IMAGENET1K_V1, torchvision.models.vgg16),
    "densenet201": ({}, torchvision.models.DenseNet201_Weights.IMAGENET1K_V1, torchvision.models.densenet201),
}


@pytest.mark.parametrize("case", list(WEIGHTS))
def test_imagenet_weights_load_from_the_torch_hub_cache(case, tmp_path, monkeypatch):
    kwargs, weights, builder = WEIGHTS[case]
    arch = case.split("-")[0]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")  # any download attempt fails fast
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    torch.manual_seed(123)
    reference = builder()
    state = reference.state_dict()
    if arch == "vgg16_coarse_conv":  # keep the file small: the encoder only reads features.*
        state = {k: v for k, v in state.items() if k.startswith("features.")}
    if arch == "densenet201":
        state = _legacy_densenet_keys(state)
        assert any(".norm.1." in key for key in state)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(state, cache / os.path.basename(weights.url))

    model = build_model(arch, encoder_weights="imagenet", progress=False, **kwargs)
    assert model.encoder_weights == "imagenet"
    expected = reference.features.state_dict()
    loaded = model.encoder.features.state_dict() if arch == "fast" else model.encoder.state_dict()
    assert set(loaded) <= set(expected)
    for key, value in loaded.items():
        assert torch.equal(value, expected[key]), key


def test_missing_imagenet_weights_offline_raise_a_plain_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # a closed port stands in for "no network"
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    build_model("fast")  # nothing is downloaded unless asked
    with pytest.raises(RuntimeError) as err:
        build_model("fast", encoder_weights="imagenet", progress=False)
    message = str(err.value)
    assert "could not be downloaded" in message
    url = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.url
    assert url in message
    assert str(tmp_path / "hub" / "checkpoints" / os.path.basename(url)) in message
    assert "encoder_weights=None" in message
    assert ENCODER_WEIGHTS == ("imagenet", None)


SHARED_MOBILENET_V2 = Path(__file__).resolve().parents[2] / "shared" / "weights" / \
    "mobilenet_v2_imagenet_from_qnnpack.safetensors"


def _mobilenet_v2_file(tmp_path: Path) -> Path:
    """Return the real ImageNet file of ../shared when present, else a seeded state dict file."""
    if SHARED_MOBILENET_V2.is_file():
        return SHARED_MOBILENET_V2
    torch.manual_seed(5)
    path = tmp_path / "mobilenet_v2.safetensors"
    save_file(torchvision.models.mobilenet_v2().state_dict(), str(path))
    return path


def test_encoder_weights_from_a_local_safetensors_file_load_exactly_and_are_recorded(tmp_path):
    path = _mobilenet_v2_file(tmp_path)
    model = build_model("fast", encoder_weights=str(path), input_size=(64, 64))
    state = load_file(str(path))
    for key, value in model.encoder.features.state_dict().items():
        assert torch.equal(value, state["features." + key]), key
    provenance = model.encoder_provenance
    assert provenance["source"] == "file" and provenance["path"] == str(path.resolve())
    assert provenance["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # the pretrained encoder's batch norms stay fixed (folded into the convs in the shared file)
    assert model.config["freeze_encoder_bn"] is True
    params = {id(p) for p in model.set_trainable("all")}
    model.train()
    for module in model.encoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert not module.training and all(id(p) not in params for p in module.parameters())
    assert any(isinstance(m, torch.nn.BatchNorm2d) and m.training for m in model.decoder.modules())
    # and that survives a checkpoint round trip
    save_checkpoint(tmp_path / "m.safetensors", model)
    again, _ = load_checkpoint(tmp_path / "m.safetensors")
    assert again.freeze_encoder_bn and torch.equal(again.encoder.features[2].conv[0][0].weight,
                                                   model.encoder.features[2].conv[0][0].weight)


def test_encoder_weights_are_recognised_by_their_structure_not_their_first_bytes(tmp_path):
    # Issue 26 #1: a safetensors file whose header length ends in 0x80 0x04 starts like a
    # protocol-4 pickle; it is a genuine file and loads.
    path = _mobilenet_v2_file(tmp_path)
    data = path.read_bytes()
    framed = tmp_path / "framed.safetensors"
    framed.write_bytes(with_header_length(data, smallest_length_ending_in(data, b"\x80\x04")))
    assert framed.read_bytes().startswith(b"\x80\x04")
    model = build_model("fast", encoder_weights=str(framed), input_size=(64, 64))
    state = load_file(str(path))
    for key, value in model.encoder.features.state_dict().items():
        assert torch.equal(value, state["features." + key]), key


def test_encoder_weights_that_are_a_pickle_or_another_network_are_refused(tmp_path):
    torch.manual_seed(0)
    pickled = tmp_path / "mobilenet_v2.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), pickled)
    with pytest.raises(ValueError, match="pickle"):
        build_model("fast", encoder_weights=str(pickled))
    other = tmp_path / "v3_small.safetensors"
    save_file(torchvision.models.mobilenet_v3_small().state_dict(), str(other))
    with pytest.raises(ValueError, match="do not fit this encoder"):
        build_model("fast", encoder_weights=str(other))
    no_features = tmp_path / "resnet.safetensors"
    save_file(torchvision.models.resnet18().state_dict(), str(no_features))
    with pytest.raises(ValueError, match="no tensor under 'features.'"):
        build_model("fast", encoder_weights=str(no_features))
    with pytest.raises(ValueError, match="not a file"):
        build_model("fast", encoder_weights=str(tmp_path / "missing.safetensors"))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a safetensors file"):
        build_model("fast", encoder_weights=str(garbage))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_camera_scale_multiplies_the_canonical_prediction(arch):
    torch.manual_seed(0)
    model = build_model(arch, **SMALL.get(arch, {})).eval()
    rgb = torch.rand(2, 3, *model.input_size)
    with torch.no_grad():
        canonical = model(rgb)
        assert torch.equal(model(rgb, CANONICAL_FOCAL), canonical)
        scaled = model(rgb, torch.tensor([CANONICAL_FOCAL * 1.2, CANONICAL_FOCAL * 0.8]))
    expected = torch.cat([canonical[:1] * 1.2, canonical[1:] * 0.8]).clamp(model.min_depth, model.max_depth)
    assert torch.allclose(scaled, expected, rtol=1e-5, atol=1e-6)
    for bad in (0.0, float("nan"), -1.0):
        with pytest.raises(ValueError, match="focal"):
            model(rgb, bad)
    with pytest.raises(ValueError, match="one per image"):
        model(rgb, torch.ones(3))
