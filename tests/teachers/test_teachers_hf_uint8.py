"""Bicubic/bilinear preprocessing of 8-bit images against the transformers processors themselves.

The processors resize ``uint8`` pixels in two passes, rounding and clamping after each; resizing floats
in one pass overshoots hard edges by tens of grey levels. Images here are high-contrast on purpose.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depthkd.errors import ModelError
from depthkd.models.teachers.hf_preprocessing import HFPreprocessing

MAX_LEVELS = 2.0  # the contract: within 2 grey levels of the processor (measured: bit-exact)
# Depth Anything's processor settings (preprocessor_config.json of depth-anything/Depth-Anything-V2-*-hf).
DEPTH_ANYTHING = dict(
    size={"height": 518, "width": 518},
    keep_aspect_ratio=True,
    ensure_multiple_of=14,
    resample=3,
    image_mean=[0.485, 0.456, 0.406],
    image_std=[0.229, 0.224, 0.225],
)
# (input size, keep_aspect_ratio): 518 x 14k targets upscaled, downscaled ~2x, upscaled ~10x, and mixed.
SIZES = [((240, 320), True), ((1000, 1400), True), ((37, 53), True), ((480, 640), False)]


def _photo(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A photo-like ``uint8`` image: smooth colour gradients, 8x8 blocks of texture and noise."""
    gen = torch.Generator().manual_seed(seed)
    y, x = torch.linspace(0, 1, height)[:, None], torch.linspace(0, 1, width)[None]
    base = torch.stack([0.5 + 0.4 * torch.sin(6 * x + 3 * y), 0.5 + 0.4 * torch.cos(4 * y - 5 * x * y), (x + y) / 2])
    blocks = (torch.rand(3, height // 8 + 1, width // 8 + 1, generator=gen) - 0.5) * 0.5
    blocks = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2)[:, :height, :width]
    noise = torch.randn(3, height, width, generator=gen) * 0.08
    return ((base + blocks + noise).clamp(0, 1) * 255).round().to(torch.uint8)


def _checkerboard(height: int, width: int, cell: int = 3) -> torch.Tensor:
    """Black and white squares of ``cell`` pixels: the worst case for a cubic overshoot."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return (((rows // cell + cols // cell) % 2) * 255).to(torch.uint8).expand(3, height, width).clone()


def _stripes(height: int, width: int) -> torch.Tensor:
    """Vertical black/white stripes two pixels wide, green inverted."""
    image = ((torch.arange(width) // 2 % 2) * 255).to(torch.uint8).expand(3, height, width).clone()
    image[1] = 255 - image[1]
    return image


IMAGES = {"photo": _photo, "checkerboard": _checkerboard, "stripes": _stripes}


def _processor(backend: str, **overrides):
    from transformers import DPTImageProcessor
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    cls = DPTImageProcessorPil if backend == "pil" else DPTImageProcessor
    return cls(**{**DEPTH_ANYTHING, **overrides})


def _grey_levels(pixel_values: torch.Tensor, processor) -> torch.Tensor:
    """Normalised ``(3,H,W)`` pixel values back in 0-255 units (before normalisation)."""
    mean = torch.tensor(processor.image_mean, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(processor.image_std, dtype=torch.float64).view(3, 1, 1)
    return (torch.as_tensor(np.asarray(pixel_values), dtype=torch.float64) * std + mean) / processor.rescale_factor


def _difference(backend: str, image: torch.Tensor, keep_aspect_ratio: bool, **options) -> float:
    """Max grey-level difference of depthkd's pixel values (default, or with ``options``) to the processor's."""
    processor = _processor(backend, keep_aspect_ratio=keep_aspect_ratio)
    given = image.numpy() if backend == "pil" else image
    expected = _grey_levels(processor(images=[given], return_tensors="pt")["pixel_values"][0], processor)
    ours, _ = HFPreprocessing.from_processor(processor, **options).prepare(image[None].float() / 255)
    assert ours.shape[-2:] == expected.shape[-2:]
    return float((_grey_levels(ours[0], processor) - expected).abs().max())


@pytest.mark.parametrize("backend", ["torchvision", "pil"])
@pytest.mark.parametrize("name", list(IMAGES))
@pytest.mark.parametrize(("size", "keep_aspect_ratio"), SIZES)
def test_bicubic_pixels_within_two_grey_levels_of_the_processor(backend, name, size, keep_aspect_ratio):
    image = IMAGES[name](*size)
    ours = _difference(backend, image, keep_aspect_ratio)
    assert ours <= MAX_LEVELS, f"{ours:.2f} grey levels from {backend}'s processor"
    assert ours < 1e-3  # in fact the same integers: only the normalisation's float rounding is left
    if (name, size) != ("stripes", (1000, 1400)):  # ~2.6x down: the stripes average out, nothing overshoots
        # The images are hard enough that resizing floats in one pass (the old default) fails.
        assert _difference(backend, image, keep_aspect_ratio, uint8_resize="none") > 9


def test_one_pass_float_resize_is_far_off_on_hard_edges():
    """What the float path (the old default) costs: 40+ grey levels on a checkerboard, ~19 on a photo."""
    assert _difference("torchvision", _checkerboard(240, 320), True, uint8_resize="none") > 35
    assert _difference("torchvision", _photo(375, 1242), True, uint8_resize="none") > 15


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize(
    ("size", "out"), [((240, 320), (392, 518)), ((1000, 1400), (518, 728)), ((37, 53), (364, 518))]
)
def test_portable_integer_resize_equals_torchs_uint8_kernel(interpolation, size, out):
    """The gathers used on GPUs and in exported graphs compute what torch's CPU uint8 kernel computes."""
    from depthkd.models.teachers.hf_preprocessing import resize_uint8

    for image in (_photo(*size, seed=1), _checkerboard(*size)):
        levels = image[None].to(torch.int32)
        native = resize_uint8(levels, out, interpolation, "torchvision", native=True)
        portable = resize_uint8(levels, out, interpolation, "torchvision", native=False)
        assert portable.dtype == torch.int32 and torch.equal(portable, native)


def test_glpn_bilinear_matches_both_backends():
    from transformers import GLPNImageProcessor
    from transformers.models.glpn.image_processing_pil_glpn import GLPNImageProcessorPil

    image = _checkerboard(250, 333)
    for processor, given in ((GLPNImageProcessor(), image), (GLPNImageProcessorPil(), image.numpy())):
        expected = processor(images=[given], return_tensors="pt")["pixel_values"][0]
        ours, _ = HFPreprocessing.from_processor(processor).prepare(image[None].float() / 255)
        assert float((ours[0] - torch.as_tensor(np.asarray(expected))).abs().max()) * 255 < 1e-3


def test_backend_read_from_the_processor_class_and_checked():
    from transformers import ZoeDepthImageProcessor

    assert HFPreprocessing.from_processor(_processor("torchvision")).uint8_resize == "torchvision"
    assert HFPreprocessing.from_processor(_processor("pil")).uint8_resize == "pil"
    assert HFPreprocessing.from_processor(_processor("pil"), uint8_resize="none").uint8_resize == "none"
    zoe = ZoeDepthImageProcessor()
    assert HFPreprocessing.from_processor(zoe).uint8_resize == "none"  # rescales to float before resizing
    with pytest.raises(ModelError, match="uint8_resize='none'"):
        HFPreprocessing.from_processor(zoe, uint8_resize="pil")
    with pytest.raises(ModelError, match="must be one of"):
        HFPreprocessing.from_processor(_processor("pil"), uint8_resize="uint8")


def test_taps_are_pils_normalised_fixed_point_weights():
    from depthkd.models.teachers.hf_preprocessing import uint8_taps

    index, weights, precision = uint8_taps(1400, 728, "bicubic", "pil")
    assert precision == 22 and index.shape == weights.shape and index.shape[1] == 728
    assert int(index.min()) == 0 and int(index.max()) == 1399
    # Each output pixel's weights sum to one (within the rounding of each weight to 1 / 2**22).
    assert (weights.sum(0) - (1 << 22)).abs().max() <= index.shape[0]
    _, weights16, precision16 = uint8_taps(320, 518, "bicubic", "torchvision")
    assert int(weights16.abs().max()) < 1 << 15 and precision16 == 14  # int16 weights, largest weight ~1


def test_gradients_flow_straight_through_as_through_the_float_resize():
    processor = _processor("torchvision")
    exact, smooth = (HFPreprocessing.from_processor(processor, uint8_resize=m) for m in (None, "none"))
    images = torch.rand(2, 3, 40, 60, generator=torch.Generator().manual_seed(0), requires_grad=True)
    grads = []
    for settings in (exact, smooth):
        pixels, _ = settings.prepare(images)
        weights = torch.linspace(-1, 1, pixels.numel()).view_as(pixels)
        (grad,) = torch.autograd.grad((pixels * weights).sum(), images)
        grads.append(grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        assert torch.equal(exact.prepare(images)[0], exact.prepare(images.detach())[0])
    values, _ = exact.prepare(images)
    assert values.requires_grad and torch.equal(values.detach(), exact.prepare(images.detach())[0])


def test_exported_graph_computes_the_same_integers():
    """``torch.export`` traces the portable gathers (no uint8 resize op), and tracing leaves no fake tensors cached."""
    settings = HFPreprocessing.from_processor(_processor("torchvision", size={"height": 42, "width": 42}))

    class Prepare(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return settings.prepare(images)[0]

    images = _checkerboard(50, 70)[None].float() / 255
    for _ in range(2):  # the second trace reuses the weights cached by the first
        program = torch.export.export(Prepare(), (images,))
        targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
        assert not any("upsample" in target for target in targets)
        assert torch.equal(program.module()(images), Prepare()(images))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_match_the_cpu_processor_path():
    processor = _processor("torchvision")
    settings = HFPreprocessing.from_processor(processor)
    images = torch.stack([_photo(480, 640).float(), _checkerboard(480, 640).float()]) / 255
    cpu, _ = settings.prepare(images)
    cuda, _ = settings.prepare(images.cuda())
    torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-5, rtol=0)
    pil = HFPreprocessing.from_processor(_processor("pil"))
    torch.testing.assert_close(pil.prepare(images.cuda())[0].cpu(), pil.prepare(images)[0], atol=1e-5, rtol=0)
