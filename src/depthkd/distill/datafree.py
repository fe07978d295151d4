"""``data-free``: distil a depth teacher from out-of-distribution simulated images (Hu et al. 2022/23).

No target-domain image is used. Each training batch of simulated images goes through:

1. **object-wise mixing** (:mod:`depthkd.data.mixing`): objects cut from other images of the batch
   are pasted in, composited by simulator depth (the depth orders objects only; it is never a target);
2. the **transformation network** G (:class:`depthkd.models.transformation.TransformationNet`):
   ``x_hat = x + G(x)``, trained so that every BatchNorm layer of the frozen teacher sees, on
   ``x_hat``, the statistics it stored from its real training data::

       L_G = bn_weight * sum_l (||mu_l(x_hat) - running_mean_l||_2 + ||var_l(x_hat) - running_var_l||_2)
             + content_weight * mean|G(x)| + tv_weight * TV(G(x))

   (batch statistics of each BN layer's *input*, over batch and space, population variance; G(x) is
   the change before ``x_hat`` is clamped to [0, 1], so the content gradient never vanishes);
3. **KD**: the student regresses the teacher's depth on ``x_hat`` (detached) with the log-L1 +
   gradient + surface-normal loss of Hu et al. (2019), or plain L1.

Schedules (``transformation``): ``alternate`` (default) runs one manual stage where each batch
takes a G step on ``L_G`` and then a student step on the KD loss with ``x_hat`` detached;
``pretrain`` trains G alone for ``pretrain_steps`` batches, then freezes it for the student stage;
``none`` skips G. With ``mixing: false`` and ``transformation: none`` this is plain response KD
on the raw OOD images, the baseline of the paper's comparison. The number of OOD images is the
dataset's length (``num=`` in the ``sim:`` spec).

The teacher stays frozen and in eval mode: its BatchNorm layers normalise with their running
statistics and those never change (checked before every G step). Gradients reach G through the
teacher's network, called as ``teacher.model(teacher.preprocess(x_hat))`` outside the adapter's
inference mode, so only PyTorch teachers with BatchNorm layers (``torch:FILE.safetensors``,
``hf:`` CNNs) can train G; any teacher works with ``transformation: none``.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from depthkd.data.mixing import MixConfig, MixResult, mix_batch
from depthkd.distill.base import LossOutput, Method, OptimizerSpec, SetupContext, Stage
from depthkd.distill.registry import register_method
from depthkd.errors import ConfigError, DataError, ModelError
from depthkd.losses import masked_mean, valid_mask
from depthkd.models.outputs import StudentOutput, TeacherOutput
from depthkd.models.transformation import TransformationNet

logger = logging.getLogger(__name__)

#: Stage names: G and student alternating; G alone (pretraining); the student alone.
ALTERNATE_STAGE = "alternate"
TRANSFORM_STAGE = "transform"
STUDENT_STAGE = "distill"

#: Hu et al. (2019) compute depth gradients with this unnormalised Sobel kernel (d/dx; d/dy is its transpose).
SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))


# ---------------------------------------------------------------------------------------------------
# KD loss: log-L1 + gradient + surface normal (Hu, Ozay, Zhang, Okatani 2019)
# ---------------------------------------------------------------------------------------------------


def sobel_gradients(depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(d/dx, d/dy)`` of ``(B,1,H,W)`` maps with the 3x3 Sobel kernel (replicate-padded borders)."""
    kernel_x = torch.tensor(SOBEL_X, dtype=depth.dtype, device=depth.device).view(1, 1, 3, 3)
    kernels = torch.cat([kernel_x, kernel_x.transpose(-1, -2)])
    grads = F.conv2d(F.pad(depth, (1, 1, 1, 1), mode="replicate"), kernels)
    return grads[:, :1], grads[:, 1:]


def interior_mask(mask: torch.Tensor) -> torch.Tensor:
    """Pixels of ``mask`` whose whole 3x3 neighbourhood is valid and inside the image (for gradients)."""
    invalid = F.pad((~mask).float(), (1, 1, 1, 1), value=1.0)
    return F.max_pool2d(invalid, kernel_size=3, stride=1) == 0


def log_grad_normal_terms(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, alpha: float = 0.5
) -> dict[str, torch.Tensor]:
    """The three unweighted terms of Hu et al.'s depth loss, over valid target pixels.

    - ``log``: mean ``ln(|p - t| + alpha)``;
    - ``grad``: mean ``ln(|dp/dx - dt/dx| + alpha) + ln(|dp/dy - dt/dy| + alpha)`` (Sobel gradients);
    - ``normal``: mean ``1 - cos(n_p, n_t)`` with ``n = (-dd/dx, -dd/dy, 1)``.

    ``alpha = 0.5`` is the paper's value. Gradient and normal terms use pixels whose 3x3 neighbourhood
    is valid. Computed in float32 with autocast off.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        pred, target = pred.float(), target.float()
        valid = valid_mask(target, mask)
        inner = interior_mask(valid)
        log_term = masked_mean(torch.log((pred - target).abs() + alpha), valid)
        pgx, pgy = sobel_gradients(pred)
        tgx, tgy = sobel_gradients(target)
        grad = torch.log((pgx - tgx).abs() + alpha) + torch.log((pgy - tgy).abs() + alpha)
        dot = pgx * tgx + pgy * tgy + 1.0
        norms = torch.sqrt(pgx.square() + pgy.square() + 1.0) * torch.sqrt(tgx.square() + tgy.square() + 1.0)
        return {
            "log": log_term,
            "grad": masked_mean(grad, inner),
            "normal": masked_mean(1.0 - dot / norms, inner),
        }


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between horizontal and vertical neighbours (anisotropic TV)."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    return dx + dy


# ---------------------------------------------------------------------------------------------------
# The teacher's BatchNorm statistics
# ---------------------------------------------------------------------------------------------------


def teacher_network(teacher: nn.Module) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """The teacher's differentiable path ``(model, preprocess)``: ``model(preprocess(images))``.

    The adapter's own forward runs under inference mode (no gradients); torch-based adapters expose
    their network and preprocessing for methods that need gradients with respect to the input.
    """
    model = getattr(teacher, "model", None)
    preprocess = getattr(teacher, "preprocess", None)
    if not isinstance(model, nn.Module) or preprocess is None:
        spec = getattr(teacher, "spec", type(teacher).__name__)
        raise ModelError(
            f"data-free: teacher {spec} ({type(teacher).__name__}) exposes no PyTorch network; the "
            "transformation network needs gradients through the teacher's BatchNorm layers. Use a torch:"
            "FILE.safetensors or hf: teacher, or set method.options.transformation=none"
        )
    return model, preprocess


class BatchNormStatistics:
    """Forward pre-hooks on a model's BatchNorm layers: how far each layer's input statistics are from
    its running statistics, while :meth:`recording`.

    Per layer, ``||mean(x) - running_mean||_2 + ||var(x) - running_var||_2`` with mean and population
    variance over batch and space, computed in float32 inside the hook (no activation is kept); the
    loss is the sum over layers (docs/METHODS.md). ``normalize=True`` divides each layer's distance by the
    square root of its channel count and averages over layers instead: a per-channel RMS deviation
    whose scale does not grow with the teacher's width and depth. Outside :meth:`recording` the hooks
    do nothing, so the teacher's ordinary forward is unaffected.
    """

    def __init__(self, model: nn.Module, what: str = "teacher", normalize: bool = False) -> None:
        self.layers = [
            (name, module)
            for name, module in model.named_modules()
            if isinstance(module, _BatchNorm) and module.track_running_stats and module.running_mean is not None
        ]
        if not self.layers:
            raise ModelError(
                f"data-free: {what} has no BatchNorm layers with running statistics. The transformation "
                "network learns to match the statistics a teacher's BatchNorm layers stored from its "
                "training data, so this method needs a teacher with BatchNorm (e.g. a CNN; TorchScript and "
                "torch.export files hide their layers: load the weights as torch:FILE.safetensors or hf:). "
                "Without them, set method.options.transformation=none (mixing and KD only)"
            )
        self.what = what
        self.normalize = normalize
        self._recording = False
        self._distances: list[torch.Tensor] = []
        self._handles = [module.register_forward_pre_hook(self._hook) for _, module in self.layers]

    def _hook(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        if not self._recording:
            return
        x = inputs[0].float()
        dims = [0, *range(2, x.ndim)]
        mean = x.mean(dims)
        var = x.var(dims, unbiased=False)
        distance = torch.linalg.vector_norm(mean - module.running_mean.float()) + torch.linalg.vector_norm(
            var - module.running_var.float()
        )
        if self.normalize:
            distance = distance / mean.numel() ** 0.5
        self._distances.append(distance)

    def check_frozen(self) -> None:
        """A :class:`ModelError` if any layer is in training mode (its running statistics would change)."""
        training = [name for name, module in self.layers if module.training]
        if training:
            raise ModelError(
                f"data-free: {self.what} BatchNorm layers {', '.join(training[:3])} are in training mode; the "
                "teacher must stay in eval mode so its running statistics never change"
            )

    @contextlib.contextmanager
    def recording(self) -> Iterator[BatchNormStatistics]:
        """Record the distances of every BatchNorm layer run inside the block."""
        self.check_frozen()
        self._distances = []
        self._recording = True
        try:
            yield self
        finally:
            self._recording = False

    def loss(self) -> torch.Tensor:
        """Sum of the recorded per-layer distances (clears the record)."""
        if not self._distances:
            raise ModelError(f"data-free: no BatchNorm layer of the {self.what} ran in the recorded forward pass")
        stacked = torch.stack(self._distances)
        total = stacked.mean() if self.normalize else stacked.sum()
        self._distances = []
        return total

    def remove(self) -> None:
        """Detach the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __deepcopy__(self, memo: dict[int, Any]) -> BatchNormStatistics:
        # Copies of the method (EMA's averaged model) share the hooks and never copy the teacher.
        return self


def mixing_seed(seed: int, batch_index: int, rank: int = 0) -> int:
    """The mixing seed of training batch ``batch_index`` on ``rank`` (a resumed run mixes the same way)."""
    return zlib.crc32(f"data-free-mix/{seed}/{batch_index}/{rank}".encode())


# ---------------------------------------------------------------------------------------------------
# The method
# ---------------------------------------------------------------------------------------------------


@register_method("data-free")
class DataFree(Method):
    """Data-free distillation from OOD simulated images: mixing, transformation network G, KD."""

    @dataclass
    class Config:
        """Options of ``data-free`` (docs/METHODS.md ``data-free``; values marked *ours* are not in the paper).

        Attributes:
            mixing: object-wise mixing on (ablation switch).
            transformation: ``alternate`` (G step then student step per batch, our default),
                ``pretrain`` (G alone for ``pretrain_steps`` batches, then frozen) or ``none``.
            k_max, p_mix: at most ``k_max`` pasted objects per image, an image mixed with probability
                ``p_mix`` (ours: 4 and 0.8).
            scale_jitter, shift_jitter, feather, zbuffer: see :class:`depthkd.data.mixing.MixConfig`
                (ours: 0, 0, 2 px, on).
            pretrain_steps: G's batches before the student stage under ``transformation: pretrain``
                (ours: 1000).
            g_width, g_blocks: G's size (ours: 32 channels, 2 residual blocks).
            g_lr: G's Adam learning rate, constant (ours: 1e-3); the student uses the recipe's ``optim``.
            bn_weight: weight of the BatchNorm statistics term.
            bn_normalize: ``false`` (default) sums the per-layer distances as docs/METHODS.md writes them;
                ``true`` (ours) uses per-channel RMS distances averaged over layers, whose scale does not
                depend on the teacher's size (then ``content_weight`` means the same for every teacher).
            content_weight: weight of the content term ``mean|G(x)|`` (ours: 1).
            tv_weight: weight of the total variation of G's change ``G(x)`` (ours: 0.1); on the change
                rather than on ``x_hat`` so the images' own edges are not smoothed away.
            kd_loss: ``log-grad-normal`` (Hu et al. 2019, the paper's loss) or ``l1``.
            log_alpha: the ``alpha`` inside the logarithms (0.5 in Hu et al.).
            grad_weight, normal_weight: weights of the gradient and normal terms (1 and 1 in Hu et al.).
        """

        mixing: bool = True
        transformation: Literal["alternate", "pretrain", "none"] = "alternate"
        k_max: int = 4
        p_mix: float = 0.8
        scale_jitter: float = 0.0
        shift_jitter: float = 0.0
        feather: int = 2
        zbuffer: bool = True
        pretrain_steps: int = 1000
        g_width: int = 32
        g_blocks: int = 2
        g_lr: float = 1e-3
        bn_weight: float = 1.0
        bn_normalize: bool = False
        content_weight: float = 1.0
        tv_weight: float = 0.1
        kd_loss: Literal["log-grad-normal", "l1"] = "log-grad-normal"
        log_alpha: float = 0.5
        grad_weight: float = 1.0
        normal_weight: float = 1.0

        def __post_init__(self) -> None:
            self.mix_config()  # validates the mixing options
            if self.pretrain_steps < 1:
                raise ConfigError(f"data-free: pretrain_steps={self.pretrain_steps} must be >= 1")
            if self.g_lr <= 0 or self.log_alpha <= 0:
                raise ConfigError(f"data-free: g_lr={self.g_lr} and log_alpha={self.log_alpha} must be > 0")

        def mix_config(self) -> MixConfig:
            """The mixing options as a :class:`MixConfig`."""
            return MixConfig(
                k_max=self.k_max,
                p_mix=self.p_mix,
                scale_jitter=self.scale_jitter,
                shift_jitter=self.shift_jitter,
                feather=self.feather,
                zbuffer=self.zbuffer,
            )

    needs_teacher = True
    needs_ground_truth = False
    teacher_features = False

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.transform: TransformationNet | None = None
        self._bn_stats: BatchNormStatistics | None = None
        self._seed = 0

    @property
    def uses_transformation(self) -> bool:
        """Whether G is part of this run."""
        return self.config.transformation != "none"

    # --- life cycle ----------------------------------------------------------------------------
    def setup(self, ctx: SetupContext) -> None:
        teacher = ctx.teacher
        if teacher is None:
            raise ConfigError("data-free needs a teacher (set teacher.spec)")
        kind = getattr(teacher, "kind", "metric_depth")
        if kind != "metric_depth":
            raise ConfigError(
                f"data-free: the teacher outputs {kind}; the student regresses the teacher's metric depth, so "
                "the teacher must be metric (use the response method with ssi for relative teachers)"
            )
        sample = ctx.sample_batch
        if "teacher" in sample and (self.config.mixing or self.uses_transformation):
            raise ConfigError(
                "data-free: cache.enabled is set, but the teacher must see the mixed/transformed images of "
                "each batch, not cached maps of the raw ones; set cache.enabled=false (a cache only fits "
                "mixing=false with transformation=none)"
            )
        if self.config.mixing and "instances" not in sample:
            raise DataError(
                "data-free: mixing needs instance masks but the training items have none (keys: "
                f"{', '.join(sorted(sample))}); train on simulator data (sim:...) or an image folder with "
                "instance PNGs, or set method.options.mixing=false"
            )
        if ctx.config is not None:
            self._seed = int(ctx.config.run.seed)
        if self.uses_transformation:
            self.attach_teacher(teacher)
            self.transform = TransformationNet(width=self.config.g_width, blocks=self.config.g_blocks)
            device = next(iter(teacher.parameters()), torch.empty(0)).device
            self.transform.to(device)

    def attach_teacher(self, teacher: nn.Module) -> None:
        """Hook the teacher's BatchNorm layers (a :class:`ModelError` if it has none)."""
        model, _ = teacher_network(teacher)
        if self._bn_stats is not None:
            self._bn_stats.remove()
        what = f"teacher {getattr(teacher, 'spec', type(teacher).__name__)}"
        self._bn_stats = BatchNormStatistics(model, what, normalize=self.config.bn_normalize)

    def g_optim(self) -> Any:
        """G's optimiser settings: Adam at ``g_lr``, no weight decay, constant rate (ours)."""
        from depthkd.config import OptimConfig

        return OptimConfig(name="adam", lr=self.config.g_lr, weight_decay=0.0, scheduler="none")

    def stages(self) -> list[Stage]:
        student = OptimizerSpec(("student",))
        transform = OptimizerSpec(("method.transform",), self.g_optim())
        mode = self.config.transformation
        if mode == "alternate":
            return [Stage(ALTERNATE_STAGE, optimizers=(transform, student), manual=True, combine=False)]
        stages = []
        if mode == "pretrain":
            stages.append(
                Stage(
                    TRANSFORM_STAGE,
                    steps=self.config.pretrain_steps,
                    optimizers=(transform,),
                    manual=True,
                    validate=False,
                    combine=False,
                )
            )
        stages.append(Stage(STUDENT_STAGE, optimizers=(student,), manual=True, combine=False))
        return stages

    def loss(
        self,
        batch: dict[str, Any],
        student_out: StudentOutput,
        teacher_out: TeacherOutput | None,
        stage: Stage,
    ) -> LossOutput:
        raise ConfigError(
            "data-free drives its own optimisation steps (mixing, G step, student step) and cannot be used "
            "as a term added to another method with method.add"
        )

    # --- the pieces ----------------------------------------------------------------------------
    def mix(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> MixResult:
        """Object-wise mixing of a batch with this method's options."""
        return mix_batch(batch, self.config.mix_config(), generator)

    def student_images(self, images: torch.Tensor) -> torch.Tensor:
        """What the student learns from: ``x_hat = x + G(x)`` without gradients (or ``x`` without G)."""
        if self.transform is None:
            return images
        with torch.no_grad():
            return self.transform(images)

    def transformation_loss(self, teacher: nn.Module, images: torch.Tensor) -> LossOutput:
        """``L_G`` on ``images`` (already mixed): BatchNorm statistics + content + TV terms, weighted."""
        if self.transform is None or self._bn_stats is None:
            raise ConfigError("data-free: the transformation network is off (transformation=none) or not set up")
        model, preprocess = teacher_network(teacher)
        if images.is_inference():  # e.g. straight from render_batch: cannot take part in autograd
            images = images.clone()
        residual = self.transform.residual(images)
        transformed = self.transform.apply_residual(images, residual)
        autocast = getattr(teacher, "autocast", contextlib.nullcontext)
        with self._bn_stats.recording() as stats, autocast():
            model(preprocess(transformed))
        cfg = self.config
        return LossOutput.from_terms(
            {
                "bn": cfg.bn_weight * stats.loss(),
                "content": cfg.content_weight * residual.float().abs().mean(),
                "tv": cfg.tv_weight * total_variation(residual.float()),
            }
        )

    def kd_loss(self, student_depth: torch.Tensor, teacher_depth: torch.Tensor) -> LossOutput:
        """The student's loss against the teacher's depth on the same (detached) images."""
        target = teacher_depth.detach()
        if target.shape != student_depth.shape:
            raise ModelError(
                f"data-free: teacher depth {tuple(target.shape)} and student depth {tuple(student_depth.shape)} "
                "differ in shape"
            )
        cfg = self.config
        if cfg.kd_loss == "l1":
            with torch.autocast(device_type=student_depth.device.type, enabled=False):
                diff = (student_depth.float() - target.float()).abs()
                return LossOutput.from_terms({"l1": masked_mean(diff, valid_mask(target.float()))})
        terms = log_grad_normal_terms(student_depth, target, alpha=cfg.log_alpha)
        return LossOutput.from_terms(
            {
                "log": terms["log"],
                "grad": cfg.grad_weight * terms["grad"],
                "normal": cfg.normal_weight * terms["normal"],
            }
        )

    # --- one training step ---------------------------------------------------------------------
    def manual_step(self, module: Any, batch: dict[str, Any], stage: Stage) -> LossOutput:
        """Mix, then (per stage) a G step on ``L_G`` and/or a student step on the KD loss."""
        images = batch["image"]
        changed = False
        if self.config.mixing:
            generator = torch.Generator().manual_seed(mixing_seed(self._seed, module.batches_seen, module.global_rank))
            images = self.mix(batch, generator).image
            changed = True
        logged: dict[str, torch.Tensor] = {}
        student_optimizer = 0
        if stage.name in (ALTERNATE_STAGE, TRANSFORM_STAGE):
            g_out = self.transformation_loss(module.teacher, images)
            if module.loss_is_usable(g_out):
                module.step_optimizer(0, g_out.total)
            logged.update({f"g/{name}": value.detach() for name, value in g_out.terms.items()})
            student_optimizer = 1
            if stage.name == TRANSFORM_STAGE:
                return LossOutput.from_terms(logged)
        if self.transform is not None:
            images = self.student_images(images)
            changed = True
        if changed:
            teacher_out = module.teacher(images)
        else:
            teacher_out = module.teacher_output(batch)
        student_out = module.student(module.images_of({"image": images}))
        kd_out = self.kd_loss(student_out.depth, teacher_out.depth)
        if module.loss_is_usable(kd_out):
            module.step_optimizer(student_optimizer, kd_out.total)
        logged.update({f"kd/{name}": value.detach() for name, value in kd_out.terms.items()})
        return LossOutput.from_terms(logged)


__all__ = [
    "BatchNormStatistics",
    "DataFree",
    "interior_mask",
    "log_grad_normal_terms",
    "mixing_seed",
    "sobel_gradients",
    "teacher_network",
    "total_variation",
]
