"""Input attributions with Captum: which pixels, time steps or features drive a prediction.

Every method is a small class in `ATTRIBUTION_METHODS` with a plain-language description, a link
to Captum's documentation and typed parameters (`Param`), so pages build their forms from the
registry. `iter_attribute` computes maps for chosen validation samples on a private copy of the
dense or pruned model, in batches, yielding progress; results are cached per (model state,
method, samples, target, options).

Captum is imported inside the functions that use it: `import workbench` stays fast.
"""

from __future__ import annotations

import contextlib
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import torch

from workbench.evaluate.workbench import register_analysis
from workbench.explain._common import (
    ExplainError,
    Forward,
    Progress,
    check_indices,
    lookup,
    model_copy,
    n_samples,
    plan_key,
    run_to_end,
    store,
    target_positions,
)
from workbench.explain._common import cached as _cached
from workbench.explain.text import Similarity, TokenInput, embedding_path, token_input
from workbench.pruning.plan import PruningPlan

if TYPE_CHECKING:
    from workbench.evaluate.workbench import Workbench

#: Kinds of input the maps know how to draw; anything else is inferred from the sample's shape
#: ("text": token ids, explained at the input embeddings, `explain.text`).
INPUT_KINDS = ("image", "signal", "tabular", "text")
#: Recent attribution results kept per workbench.
CACHE_SIZE = 64
CAPTUM_API = "https://captum.ai/api/"

#: What `target` may say besides class indices.
Target = int | str | Sequence[int] | torch.Tensor | None


@dataclass(frozen=True)
class Param:
    """A method's parameter, typed by its default: int, float or one of `choices` (str)."""

    name: str
    label: str
    default: int | float | str
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    #: Input kinds the parameter means nothing for (text has its own baseline: padding).
    not_for: tuple[str, ...] = ()

    def check(self, value: Any) -> int | float | str:
        if self.choices:
            if value not in self.choices:
                raise ExplainError(
                    f"{self.name} must be one of {', '.join(self.choices)}; got {value!r}"
                )
            return value
        kind = type(self.default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExplainError(f"{self.name} must be a number, got {value!r}")
        if kind is int and int(value) != value:
            raise ExplainError(f"{self.name} must be a whole number, got {value!r}")
        value = kind(value)
        if not math.isfinite(value):
            raise ExplainError(f"{self.name} must be finite, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ExplainError(f"{self.name} must be at least {self.minimum:g}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise ExplainError(f"{self.name} must be at most {self.maximum:g}, got {value!r}")
        return value


_BASELINE = Param(
    "baseline",
    "Baseline",
    "zero",
    "The 'absent' input the method compares with: all zeros (a blank image, a flat signal, "
    "every standardised feature at its mean), or the average validation input.",
    choices=("zero", "mean"),
    not_for=("text",),
)


@dataclass(frozen=True)
class MethodContext:
    """What a method needs besides the model, the inputs and the target."""

    kind: str  # "image" | "signal" | "tabular" | "text" | "other"
    reference: torch.Tensor  # validation inputs: the mean baseline, GradientSHAP's baselines
    options: dict[str, Any]
    budget: int  # model evaluations (inputs) per forward pass
    #: Captum's additional_forward_args: an embedding model's dense embeddings of the batch.
    args: tuple[torch.Tensor, ...] | None = None
    #: Text: the input embedding that token maps are taken at.
    token: TokenInput | None = None

    def captum_args(self) -> dict[str, Any]:
        return {} if self.args is None else {"additional_forward_args": self.args}

    def baseline(self) -> float | torch.Tensor:
        if self.options.get("baseline", "zero") == "mean":
            return self.reference.mean(dim=0, keepdim=True)
        return 0.0


class AttributionMethod(ABC):
    """A Captum input-attribution algorithm, described for people and typed for forms."""

    # Class attributes, or set per instance where variants differ by a constant (OneBackward).
    name: str
    label: str
    description: str  # what it measures, in plain language
    url: str  # Captum's documentation
    captum_class: str
    #: The method reports how far its attributions are from summing to f(x) − f(baseline).
    has_delta: ClassVar[bool] = False
    #: Back-propagates to the input (which must then require gradients).
    uses_gradients: ClassVar[bool] = True
    #: Reads the gradient at the input alone (no path from a baseline).
    local: ClassVar[bool] = False
    params: ClassVar[tuple[Param, ...]] = ()
    #: Captum's layer method that does the same at the input embeddings of token ids (None:
    #: the method has no text form).
    token_class: ClassVar[str | None] = None

    def unsupported(self, kind: str, sample_shape: tuple[int, ...]) -> str | None:
        """Why the method does not apply to this input, or None when it does."""
        if kind == "text" and self.token_class is None:
            return (
                "token ids are integers, and this method perturbs the input itself; on text "
                "use Integrated Gradients, Input × Gradient or Saliency (at the embeddings)"
            )
        return None

    def unsupported_task(self, task: str) -> str | None:
        """Why the method does not apply to the model's task, or None when it does."""
        if task == "embedding" and self.local:
            return (
                "an embedding model is explained by its similarity to the dense embedding, "
                "which peaks at the input, so its gradient there is zero; use Integrated "
                "Gradients (or GradientSHAP, Occlusion), which follow a path from a baseline"
            )
        return None

    def params_for(self, kind: str) -> tuple[Param, ...]:
        """The parameters that mean something for this kind of input."""
        return tuple(p for p in self.params if kind not in p.not_for)

    def compute_tokens(
        self, forward: Any, inputs: torch.Tensor, target: Any, context: MethodContext
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attributions (N, L, D) at the input embeddings of token ids, and the delta if any."""
        raise ExplainError(f"{self.label} has no form for token ids")

    def evaluations(self, options: dict[str, Any], sample_shape: tuple[int, ...]) -> int:
        """Model evaluations per sample: how many samples fit in one batch."""
        return 1

    def samples_per_call(self, options: dict[str, Any], shape: tuple[int, ...], budget: int) -> int:
        return max(1, budget // self.evaluations(options, shape))

    @abstractmethod
    def compute(
        self, forward: Forward, inputs: torch.Tensor, target: Any, context: MethodContext
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attributions shaped like `inputs` and, where the method has one, a delta per sample."""

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def check_options(self, options: dict[str, Any], kind: str | None = None) -> dict[str, Any]:
        known = {p.name: p for p in (self.params if kind is None else self.params_for(kind))}
        unknown = sorted(set(options) - set(known))
        if unknown:
            valid = ", ".join(known) or "none"
            raise ExplainError(
                f"{self.label} has no option {unknown[0]!r}; its options are: {valid}"
            )
        return {name: p.check(options.get(name, p.default)) for name, p in known.items()}


class IntegratedGradients(AttributionMethod):
    name = "integrated_gradients"
    label = "Integrated Gradients"
    description = (
        "Slides the input from a blank baseline to the real sample and adds up, for every "
        "feature, how much the output changed along the way. The attributions add up to the "
        "change in the output, f(input) − f(baseline); the delta shown says how far they miss."
    )
    url = CAPTUM_API + "integrated_gradients.html"
    captum_class = "IntegratedGradients"
    token_class = "LayerIntegratedGradients"
    has_delta = True
    params = (
        Param(
            "n_steps",
            "Steps",
            50,
            "Points on the path from baseline to input (Gauss–Legendre). More steps, smaller "
            "delta, proportionally slower.",
            minimum=2,
            maximum=1000,
        ),
        _BASELINE,
    )

    def evaluations(self, options: dict[str, Any], sample_shape: tuple[int, ...]) -> int:
        return int(options["n_steps"])

    def compute(self, forward, inputs, target, context):
        from captum.attr import IntegratedGradients as Captum

        n_steps = int(context.options["n_steps"])
        attributions, delta = Captum(forward).attribute(
            inputs,
            baselines=context.baseline(),
            target=target,
            n_steps=n_steps,
            # Only when one sample's path alone exceeds the budget: split the steps.
            internal_batch_size=max(len(inputs), context.budget)
            if len(inputs) * n_steps > context.budget
            else None,
            return_convergence_delta=True,
            **context.captum_args(),
        )
        return attributions, delta

    def compute_tokens(self, forward, inputs, target, context):
        from captum.attr import LayerIntegratedGradients

        token, n_steps = context.token, int(context.options["n_steps"])
        attributions = LayerIntegratedGradients(forward, token.module).attribute(
            inputs,
            baselines=token.baseline(inputs),
            target=target,
            n_steps=n_steps,
            internal_batch_size=max(len(inputs), context.budget)
            if len(inputs) * n_steps > context.budget
            else None,
            **context.captum_args(),
        )
        # Captum's own delta would evaluate f on the baseline's ids, whose attention mask hides
        # every token; the path ran with the text's mask, so its start is evaluated with it.
        args = context.args or ()
        with torch.no_grad():
            end = _explained(forward(inputs, *args), target)
            with embedding_path(token, torch.zeros(len(inputs))):
                start = _explained(forward(inputs, *args), target)
        total = attributions.reshape(len(inputs), -1).sum(dim=1)
        return attributions, total - (end - start).to(total.dtype)


def _explained(outputs: torch.Tensor, target: Any) -> torch.Tensor:
    """The output Captum explains for each row, given its `target` argument."""
    if outputs.dim() == 1:
        return outputs
    if isinstance(target, torch.Tensor):
        return outputs.gather(1, target.reshape(-1, 1).to(outputs.device))[:, 0]
    return outputs.reshape(len(outputs), -1)[:, 0 if target is None else int(target)]


class OneBackward(AttributionMethod):
    """A Captum method of one backward pass and no options (Saliency, Input × Gradient)."""

    local = True
    #: Captum's LayerGradientXActivation at the embeddings (gradient × embedding).
    token_class = "LayerGradientXActivation"

    def __init__(
        self,
        name: str,
        label: str,
        description: str,
        captum_class: str,
        *,
        times_input: bool,
        **extra: Any,
    ) -> None:
        self.name, self.label, self.description = name, label, description
        self.url = f"{CAPTUM_API}{name}.html"
        self.captum_class = captum_class
        self.extra = extra  # further arguments of Captum's attribute()
        #: On text: gradient × embedding (True), or the gradient alone (Saliency).
        self.times_input = times_input

    def compute(self, forward, inputs, target, context):
        import captum.attr

        captum = getattr(captum.attr, self.captum_class)
        attributions = captum(forward).attribute(
            inputs, target=target, **self.extra, **context.captum_args()
        )
        return attributions, None

    def compute_tokens(self, forward, inputs, target, context):
        from captum.attr import LayerGradientXActivation

        method = LayerGradientXActivation(
            forward, context.token.module, multiply_by_inputs=self.times_input
        )
        attributions = method.attribute(inputs, target=target, **context.captum_args())
        return (attributions.abs() if self.extra.get("abs") else attributions), None


SALIENCY = OneBackward(
    "saliency",
    "Saliency",
    "How strongly the output reacts to a tiny change of each feature: the absolute "
    "gradient. Cheap (one backward pass) and local: it says where the model is sensitive, "
    "not what the sample contributed.",
    "Saliency",
    times_input=False,
    abs=True,
)
INPUT_X_GRADIENT = OneBackward(
    "input_x_gradient",
    "Input × Gradient",
    "Each feature's value times the gradient: a first-order estimate of how much that "
    "feature contributes to the output. Zero wherever the input is zero, as on the black "
    "background of a digit.",
    "InputXGradient",
    times_input=True,
)


class GradientShap(AttributionMethod):
    name = "gradient_shap"
    label = "GradientSHAP"
    description = (
        "Integrated Gradients averaged over random baselines drawn from the validation set "
        "(with optional noise): an estimate of SHAP values, the fair share of each feature "
        "in moving the output away from a typical sample. Seeded, so the same request gives "
        "the same map."
    )
    url = CAPTUM_API + "gradient_shap.html"
    captum_class = "GradientShap"
    has_delta = True
    params = (
        Param(
            "n_samples",
            "Random draws per sample",
            20,
            "Baselines (and path points) drawn per sample; more draws, less noise.",
            minimum=1,
            maximum=500,
        ),
        Param(
            "stdevs",
            "Noise (std)",
            0.0,
            "Standard deviation of Gaussian noise added to the input at each draw.",
            minimum=0.0,
            maximum=10.0,
        ),
        Param("seed", "Seed", 0, "Seed of the random draws.", minimum=0, maximum=2**31 - 1),
    )

    def evaluations(self, options: dict[str, Any], sample_shape: tuple[int, ...]) -> int:
        return int(options["n_samples"])

    def compute(self, forward, inputs, target, context):
        from captum.attr import GradientShap as Captum

        options = context.options
        n_samples = int(options["n_samples"])
        with seeded(int(options["seed"])):
            attributions, delta = Captum(forward).attribute(
                inputs,
                baselines=context.reference,
                n_samples=n_samples,
                stdevs=float(options["stdevs"]),
                target=target,
                return_convergence_delta=True,
                **context.captum_args(),
            )
        # One delta per draw, the draws of each sample together: their mean is the delta of
        # the averaged attributions against the average baseline output.
        return attributions, delta.reshape(len(inputs), n_samples).mean(dim=1)


class Occlusion(AttributionMethod):
    name = "occlusion"
    label = "Occlusion"
    description = (
        "Covers one patch of the input at a time with the baseline and measures how much the "
        "output drops. No gradients: it shows what the model really needs to see, at the "
        "resolution of the patch."
    )
    url = CAPTUM_API + "occlusion.html"
    captum_class = "Occlusion"
    uses_gradients = False
    params = (
        Param(
            "window",
            "Patch size (0 = automatic)",
            0,
            "Side of the square patch (images), length of the window (signals); tabular rows "
            "occlude one feature at a time.",
            minimum=0,
            maximum=256,
        ),
        Param(
            "stride",
            "Stride (0 = half the patch)",
            0,
            "How far the patch moves between evaluations.",
            minimum=0,
            maximum=256,
        ),
        _BASELINE,
    )

    def unsupported(self, kind: str, sample_shape: tuple[int, ...]) -> str | None:
        if kind == "text":
            return super().unsupported(kind, sample_shape)
        if not 1 <= len(sample_shape) <= 3:
            return (
                "occlusion slides a patch over an image (channels, height, width), a signal "
                f"(channels, length) or a row of features; this input is {sample_shape}"
            )
        return None

    def windows(
        self, options: dict[str, Any], shape: tuple[int, ...], kind: str
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Captum's sliding window and strides for one sample of this shape."""
        if len(shape) == 1:  # a row of features (or a flattened image): one feature at a time
            return (1,), (1,)
        if kind == "image" and len(shape) == 2:  # (H, W) without a channel axis
            channels, spatial = (), shape
        else:  # (C, H, W) or (C, L): the patch covers every channel
            channels, spatial = shape[:1], shape[1:]
        if options["window"]:
            window = int(options["window"])
        elif len(spatial) == 2:  # 2 pixels on 8×8 digits, 5 on 32×32 images
            window = max(2, min(spatial) // 6)
        else:  # a tenth of a signal
            window = max(1, spatial[0] // 10)
        window = min(window, *spatial)
        stride = int(options["stride"]) or max(1, window // 2)
        return (*channels, *[window] * len(spatial)), (*channels, *[stride] * len(spatial))

    def _positions(self, options: dict[str, Any], shape: tuple[int, ...], kind: str) -> int:
        window, strides = self.windows(options, shape, kind)
        return math.prod(
            (size - w) // s + 1 for size, w, s in zip(shape, window, strides, strict=True)
        )

    def evaluations(self, options: dict[str, Any], sample_shape: tuple[int, ...]) -> int:
        # The kind only changes (H, W) inputs; counting them as (C, L) errs on more evaluations.
        return self._positions(options, sample_shape, "image") + 1

    def compute(self, forward, inputs, target, context):
        from captum.attr import Occlusion as Captum

        shape = tuple(inputs.shape[1:])
        window, strides = self.windows(context.options, shape, context.kind)
        positions = self._positions(context.options, shape, context.kind)
        attributions = Captum(forward).attribute(
            inputs,
            sliding_window_shapes=window,
            strides=strides,
            baselines=context.baseline(),
            target=target,
            perturbations_per_eval=max(1, min(positions, context.budget // len(inputs))),
            **context.captum_args(),
        )
        return attributions, None


ATTRIBUTION_METHODS: dict[str, AttributionMethod] = {
    m.name: m
    for m in (IntegratedGradients(), SALIENCY, INPUT_X_GRADIENT, GradientShap(), Occlusion())
}


_rng_lock = threading.Lock()


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's and numpy's global generators for one call, then restore them.

    GradientSHAP draws its path points from numpy's global generator and its baselines from
    torch's; the lock keeps two seeded calls from interleaving their draws.
    """
    with _rng_lock, torch.random.fork_rng(devices=[]):
        state = np.random.get_state()
        try:
            np.random.seed(seed)
            torch.manual_seed(seed)
            yield
        finally:
            np.random.set_state(state)


# ---- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribution:
    """Input attributions of some validation samples on one model state (dense or a plan)."""

    method: str
    indices: tuple[int, ...]
    plan: PruningPlan  # the model state; an empty plan is the dense model
    kind: str  # how the input is drawn: "image", "signal", "tabular", "text" or "other"
    inputs: torch.Tensor  # (n, *sample shape); text: token ids (n, L)
    attributions: torch.Tensor  # (n, *sample shape); text: one score per token (n, L)
    delta: torch.Tensor | None  # (n,) convergence delta where the method has one
    targets: torch.Tensor | None  # (n,) class explained; None for a regressor's single output
    labels: torch.Tensor | None  # (n,) true class or value; None for unlabelled data
    predictions: torch.Tensor  # (n,) predicted class or value
    confidence: torch.Tensor  # (n,) softmax probability of the predicted class; NaN for regression
    scores: torch.Tensor  # (n,) the explained output: the target's logit, or the value
    options: dict[str, Any] = field(default_factory=dict)
    #: Text: (n, L) True at real tokens (padding scores 0 and is not drawn); None otherwise.
    tokens: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def is_dense(self) -> bool:
        return self.plan.is_dense

    def table(self, class_names: Sequence[str] = ()) -> pd.DataFrame:
        """One row per sample: index, label, prediction, confidence, target, total, delta."""

        def name(value: float) -> str:
            i = int(value)
            return class_names[i] if 0 <= i < len(class_names) else str(i)

        classification = self.targets is not None
        labels = None if self.labels is None else self.labels.tolist()
        rows = {
            "index": list(self.indices),
            "label": None
            if labels is None
            else [name(v) if classification else float(v) for v in labels],
            "prediction": [
                name(v) if classification else float(v) for v in self.predictions.tolist()
            ],
            "confidence": self.confidence.tolist(),
            "explained": [name(v) for v in self.targets.tolist()] if classification else None,
            "attribution_sum": self.attributions.reshape(len(self), -1).sum(dim=1).tolist(),
            "delta": self.delta.tolist() if self.delta is not None else None,
        }
        return pd.DataFrame({k: v for k, v in rows.items() if v is not None})


@dataclass(frozen=True)
class MapView:
    """Arrays ready to draw: each sample's input and its attribution, in the same layout."""

    kind: str  # "image": (n, H, W); "signal": (n, L); "tabular": (n, F); "text": (n, L) ids
    inputs: np.ndarray
    values: np.ndarray
    channels: int = 1  # input channels summed into `values` (images, signals)
    #: Text: (n, L) True at real tokens; None for other kinds.
    tokens: np.ndarray | None = None


def map_view(attribution: Attribution) -> MapView:
    """Images as (H, W) maps (channels summed), signals as lines, everything else as features."""
    x = attribution.inputs.detach().float().cpu()
    a = attribution.attributions.detach().float().cpu()
    n, shape = len(x), tuple(x.shape[1:])
    if attribution.kind == "text":  # ids stay ids: the caller turns them into token strings
        kept = attribution.tokens.cpu().numpy()
        return MapView("text", attribution.inputs.cpu().numpy(), a.numpy(), tokens=kept)
    if attribution.kind == "image":
        if len(shape) == 3:  # (C, H, W): attribution summed over channels, input averaged
            return MapView("image", x.mean(dim=1).numpy(), a.sum(dim=1).numpy(), shape[0])
        if len(shape) == 2:  # (H, W)
            return MapView("image", x.numpy(), a.numpy())
        side = math.isqrt(math.prod(shape))
        if side * side == math.prod(shape):  # a flattened square image, as digits-mlp's
            return MapView(
                "image", x.reshape(n, side, side).numpy(), a.reshape(n, side, side).numpy()
            )
    if attribution.kind == "signal" and len(shape) in (1, 2):
        if len(shape) == 2:  # (C, L)
            return MapView("signal", x.mean(dim=1).numpy(), a.sum(dim=1).numpy(), shape[0])
        return MapView("signal", x.numpy(), a.numpy())
    return MapView("tabular", x.reshape(n, -1).numpy(), a.reshape(n, -1).numpy())


def map_similarity(first: Attribution, second: Attribution) -> np.ndarray:
    """Per sample, the cosine similarity of two maps (1: same direction; 0: unrelated)."""
    if first.indices != second.indices:
        raise ExplainError("the two attributions are of different samples")
    a = first.attributions.reshape(len(first), -1).double()
    b = second.attributions.reshape(len(second), -1).double()
    norms = a.norm(dim=1) * b.norm(dim=1)
    cosine = (a * b).sum(dim=1) / norms.clamp_min(1e-30)
    return torch.where(norms > 0, cosine, torch.nan).cpu().numpy()


def compare(
    dense: Attribution, pruned: Attribution, class_names: Sequence[str] = ()
) -> pd.DataFrame:
    """One row per sample: label, each model's prediction, confidence and delta, and how
    similar the two maps are (cosine)."""
    a, b = dense.table(class_names), pruned.table(class_names)
    table = a[["index"] + (["label"] if "label" in a else [])].copy()
    for prefix, part in (("dense", a), ("pruned", b)):
        for column in ("prediction", "confidence", "explained", "delta"):
            if column in part:
                table[f"{prefix}_{column}"] = part[column].to_numpy()
    table["similarity"] = map_similarity(dense, pruned)
    return table


# ---- computing ---------------------------------------------------------------------------------


def resolve_input_kind(
    kind: str | None, sample_shape: tuple[int, ...], integer: bool = False
) -> str:
    """The drawing kind of an input: "text" for token ids (`integer` inputs), the model's
    declared kind, else guessed from its rank."""
    if integer or kind == "text":
        return "text"
    if kind in INPUT_KINDS:
        return kind
    return {3: "image", 2: "signal", 1: "tabular"}.get(len(sample_shape), "other")


def get_method(method: str) -> AttributionMethod:
    return lookup(ATTRIBUTION_METHODS, method, "attribution method")


def applicable_methods(
    kind: str | None,
    sample_shape: tuple[int, ...],
    task: str = "classification",
    *,
    integer: bool = False,
) -> list[str]:
    """Names of the methods that apply to this kind and shape of input and this task."""
    resolved = resolve_input_kind(kind, sample_shape, integer)
    return [
        name
        for name, m in ATTRIBUTION_METHODS.items()
        if m.unsupported(resolved, sample_shape) is None and m.unsupported_task(task) is None
    ]


def attribute(bench: Workbench, *args: Any, **options: Any) -> Attribution:
    """Input attributions of validation samples: `iter_attribute` (same arguments) run to the
    end."""
    return run_to_end(iter_attribute(bench, *args, **options))


def iter_attribute(
    bench: Workbench,
    indices: Sequence[int] | torch.Tensor | int,
    method: str = "integrated_gradients",
    plan: PruningPlan | None = None,
    target: Target = None,
    *,
    input_kind: str | None = None,
    batch_size: int | None = None,
    **options: Any,
) -> Iterator[Progress[Attribution]]:
    """Progress events of computing input attributions; the last one carries the `Attribution`.

    `plan=None` explains the dense model. `target`: None or "predicted" explains each sample's
    predicted class (on the model being explained), "true" its label, an int that class for all
    samples, a sequence one class per sample; a regressor's single output is always the target.
    `options` are the method's parameters (`ATTRIBUTION_METHODS[method].params`).
    """
    algorithm = get_method(method)
    reference = bench.val_inputs
    shape = tuple(reference.shape[1:])
    kind = resolve_input_kind(input_kind, shape, integer=not reference.is_floating_point())
    options = algorithm.check_options(options, kind)
    chosen = check_indices(indices, n_samples(bench))
    index = torch.tensor(chosen, dtype=torch.long, device=reference.device)
    reason = algorithm.unsupported(kind, shape) or algorithm.unsupported_task(bench.task)
    if reason is not None:
        raise ExplainError(f"{algorithm.label} does not apply here: {reason}")
    state = plan_key(plan)
    budget = int(batch_size or bench.batch_size)
    if budget < 1:
        raise ExplainError(f"batch_size must be positive, got {budget}")
    key = (state, method, chosen, _target_key(target), tuple(sorted(options.items())), kind)
    found = _cached(bench, "attribution", key)
    if found is not None:
        yield Progress(len(chosen), len(chosen), "cached", found)
        return

    inputs = reference[index]
    labels = bench.targets[index] if bench.targets is not None else None
    copy = model_copy(bench, state)
    token = token_input(copy.model) if kind == "text" else None
    # Text methods hook the shared copy's embedding: hold its lock (as layer importance does).
    with copy.lock if token is not None else contextlib.nullcontext():
        with torch.no_grad():
            outputs = torch.cat([copy.forward(b) for b in inputs.split(budget)])
        dense = bench.dense_outputs[index] if bench.task == "embedding" else None
        targets, captum_target, predictions, confidence, scores = _targets(
            bench, outputs, labels, target, dense
        )
        forward = copy.forward if dense is None else Similarity(copy.forward)
        per_call = algorithm.samples_per_call(options, shape, budget)
        parts, deltas = [], []
        total = len(chosen)
        for start in range(0, total, per_call):
            stop = min(total, start + per_call)
            batch_target = (
                captum_target[start:stop]
                if isinstance(captum_target, torch.Tensor)
                else captum_target
            )
            context = MethodContext(
                kind,
                reference,
                options,
                budget,
                args=None if dense is None else (dense[start:stop],),
                token=token,
            )
            batch = inputs[start:stop].detach()
            if token is not None:
                attributions, delta = algorithm.compute_tokens(
                    forward, batch, batch_target, context
                )
                # (n, L, D) at the embeddings -> one score per token; padding excluded.
                attributions = attributions.sum(dim=-1) * token.real(batch)
            else:
                if algorithm.uses_gradients:
                    batch = batch.clone().requires_grad_(True)
                attributions, delta = algorithm.compute(forward, batch, batch_target, context)
            parts.append(attributions.detach())
            if delta is not None:
                deltas.append(delta.detach().reshape(-1))
            if stop < total:
                yield Progress(stop, total, f"{algorithm.label}: {stop} of {total} samples")
    result = Attribution(
        method=method,
        indices=chosen,
        plan=state,
        kind=kind,
        inputs=inputs,
        attributions=torch.cat(parts),
        delta=torch.cat(deltas) if deltas else None,
        targets=targets,
        labels=labels,
        predictions=predictions,
        confidence=confidence,
        scores=scores,
        options=options,
        tokens=token.real(inputs) if token is not None else None,
    )
    store(bench, "attribution", key, result, CACHE_SIZE)
    yield Progress(total, total, "done", result)


def _target_key(target: Target) -> Any:
    if isinstance(target, torch.Tensor):
        return ("tensor", tuple(target.reshape(-1).tolist()))
    if isinstance(target, (list, tuple)):
        return ("list", tuple(target))
    return target


def _single(target: Target) -> bool:
    """The target says nothing beyond the model's one explained output."""
    return (
        target is None
        or (isinstance(target, str) and target in ("predicted", "true"))
        or (isinstance(target, int) and not isinstance(target, bool) and target == 0)
    )


def _targets(
    bench: Workbench,
    outputs: torch.Tensor,
    labels: torch.Tensor | None,
    target: Target,
    dense: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, Any, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(targets, Captum's target argument, predictions, confidence, explained scores).

    An embedding model (`dense`: the dense embeddings of the samples) is explained by its
    cosine similarity to them: that is both its "prediction" and its explained score."""
    n = len(outputs)
    if dense is not None:
        if not _single(target):
            raise ExplainError(
                "an embedding model is explained by its similarity to the dense embedding: "
                "leave the target unset"
            )
        similarity = torch.nn.functional.cosine_similarity(
            outputs.flatten(1), dense.flatten(1).to(outputs.dtype), dim=1
        )
        nan = torch.full((n,), float("nan"), device=outputs.device)
        return None, None, similarity, nan, similarity
    layout = target_positions(bench)
    if layout != "classes":  # a regressor: its single output is the target
        if not _single(target):
            raise ExplainError(
                "a regression model has a single output: leave the target unset (or 0)"
            )
        values = outputs.reshape(n)
        nan = torch.full((n,), float("nan"), device=values.device)
        return None, (None if layout == "scalar" else 0), values, nan, values

    n_classes = outputs.shape[1]
    probabilities = outputs.softmax(dim=1)
    predictions = outputs.argmax(dim=1)
    confidence = probabilities.gather(1, predictions[:, None])[:, 0]
    if target is None or (isinstance(target, str) and target == "predicted"):
        targets = predictions
    elif isinstance(target, str) and target == "true":
        if labels is None:
            raise ExplainError("the validation data has no labels: explain the predicted class")
        targets = labels.long()
    elif isinstance(target, str):
        raise ExplainError(
            f"target must be 'predicted', 'true', a class index or one per sample; got {target!r}"
        )
    else:
        if isinstance(target, torch.Tensor):
            values = target.reshape(-1).tolist()
        elif isinstance(target, Sequence):
            values = list(target)
        else:
            values = [target]
        if len(values) == 1:
            values = values * n
        if len(values) != n:
            raise ExplainError(f"{len(values)} targets given for {n} samples")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ExplainError(f"target classes must be integers, got {v!r}")
            if not 0 <= v < n_classes:
                raise ExplainError(
                    f"target class {v} is out of range: the model has {n_classes} classes "
                    f"(0 to {n_classes - 1})"
                )
        targets = torch.tensor([int(v) for v in values], device=outputs.device)
    scores = outputs.gather(1, targets[:, None])[:, 0]
    return targets, targets, predictions, confidence, scores


register_analysis("attribute", attribute)
