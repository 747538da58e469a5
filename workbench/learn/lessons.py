"""The lessons of the Learn page. Add one by adding a `Lesson` to LESSONS (see model.py).

Texts quote the learner's own numbers through {placeholders}: {dense}, {pruned}, {drop},
{sparsity}, {nonzero}, {params}, {sparse_bytes}, {compressed_bytes}, {dense_bytes},
{flops_share}, {finetuned}, {distilled}, {gradual} (and their {..._drop}), and the names a
step `record`s.
"""

from __future__ import annotations

from workbench.learn.model import Lesson, Measured, OnModel, PlanIs, Recovered, Setup, Step

PRUNE, RECOVER, SENSITIVITY = "pages/prune.py", "pages/recover.py", "pages/sensitivity.py"

_MLP_90 = PlanIs("digits-mlp", 0.88, 0.92, method="l1", granularity="unstructured")

MAGNITUDE = Lesson(
    key="magnitude",
    title="Magnitude pruning of LeNet-300-100",
    summary="Remove 90 % of a classic network's weights by magnitude, watch the accuracy, then "
    "win it back by fine-tuning: Han et al. (2015) in miniature.",
    minutes=4,
    steps=(
        Step(
            "Meet the model",
            "Open **digits-mlp**: LeNet-300-100, three fully connected layers reading 8×8 "
            "digits. Use *Set it up*, or pick it in the sidebar.",
            OnModel("digits-mlp"),
            "It has {params} weights and a dense {metric} of {dense} on its validation set.",
            setup=Setup("digits-mlp"),
        ),
        Step(
            "Prune 90 % by magnitude",
            "On the Prune page, keep the criterion **L1 magnitude** and *unstructured*, choose "
            "the **global** scope and drag *All unlocked layers* to **90 %**.",
            _MLP_90,
            "{nonzero} of {params} weights are left, and the {metric} fell from {dense} to "
            "{pruned} ({drop}). The smallest weights mattered little each, but removing nine in "
            "ten at once, without retraining, costs the network its balance.",
            page=PRUNE,
            record={"one_shot": "pruned", "one_shot_drop": "drop"},
        ),
        Step(
            "Recover it by fine-tuning",
            "On the Recover page, keep *Fine-tune* and a distillation weight of 0, and press "
            "**Start**. The pruned weights are held at exactly zero while the rest retrain.",
            Recovered(distill=False, gradual=False, plan=_MLP_90),
            "Fine-tuning took the {metric} from {one_shot} back to {finetuned} "
            "({finetuned_drop} against dense) with the same {nonzero} weights: pruning without "
            "retraining is half the method. Han et al. pruned this architecture 12× on MNIST "
            "with no loss in the same way.",
            page=RECOVER,
        ),
    ),
    next="Try 95 % or 98 %: where does fine-tuning stop being enough? Or prune whole neurons "
    "(granularity *channel*) and compare how much each costs.",
)

_CNN_UNIFORM = PlanIs("digits-cnn", 0.79, 0.81, scope="layer", uniform=True, all_layers=True)
BUDGETS = Lesson(
    key="budgets",
    title="Uniform vs sensitivity-driven budgets",
    summary="The same 80 % of digits-cnn's weights, spread evenly or where the sensitivity scan "
    "says they can go: why layers differ, and why they interact.",
    minutes=5,
    steps=(
        Step(
            "80 % on every layer",
            "Open **digits-cnn** (*Set it up*). On the Prune page, in the *layer* scope, drag "
            "*All unlocked layers* to **80 %**: every layer loses the same share.",
            _CNN_UNIFORM,
            "Uniform 80 % leaves a {metric} of {pruned} ({drop}). The first convolutions have "
            "few weights and every later layer reads their output, so an even cut hurts them most.",
            page=PRUNE,
            setup=Setup("digits-cnn"),
            record={"uniform": "pruned", "uniform_drop": "drop"},
        ),
        Step(
            "Let the sensitivity scan decide",
            "On the Sensitivity page, run the scan, ask the budget solver for **80 %** "
            "sparsity and **apply** a proposal (equal-drop or global).",
            PlanIs("digits-cnn", 0.78, 0.82, uniform=False),
            "The scan's allocation reaches {sparsity} with a {metric} of {pruned} ({drop}), "
            "against {uniform} for uniform. Each layer tolerates a different share; the "
            "interaction check on the Sensitivity page shows the single-layer drops do not "
            "simply add up: pruning one layer changes what the next one receives.",
            page=SENSITIVITY,
        ),
    ),
    next="Lock the first layer and solve again, or ask for a maximum drop of 1 pp instead of a "
    "sparsity: the solver then finds the sparsest plan within it.",
)

_ZEROS = PlanIs("digits-cnn", 0.88, 0.92, granularity="unstructured", scope="global")
_CHANNELS = PlanIs("digits-cnn", granularity="channel", levels=(0.45, 0.55))
ZEROS = Lesson(
    key="zeros",
    title="Zeros are not speed",
    summary="90 % of weights zeroed against 50 % of channels removed: what shrinks, what gets "
    "faster, and what only looks smaller. Measured, not assumed.",
    minutes=5,
    steps=(
        Step(
            "Zero 90 % of the weights",
            "Open **digits-cnn** (*Set it up*). On the Prune page choose the **global** scope "
            "and drag *All unlocked layers* to **90 %**, unstructured.",
            _ZEROS,
            "Stored sparse, the weights take {sparse_bytes} (dense: {dense_bytes}), and skipping "
            "the zeros would need {flops_share} of the FLOPs. But every layer keeps its shape.",
            page=PRUNE,
            setup=Setup("digits-cnn"),
            record={"unstructured_metric": "pruned"},
        ),
        Step(
            "Time it",
            "On the Prune page, open **Ship** and press **Measure latency**: the dense model "
            "and the masked one (the zeros written in) run the same input.",
            Measured(_ZEROS),
            "Dense {dense_ms}, masked {masked_ms}: {masked_speedup} the dense speed. A dense "
            "kernel multiplies the zeros too, so inference is exactly as fast: zeros are not "
            "speed.",
            page=PRUNE,
            record={"masked_speedup_90": "masked_speedup"},
        ),
        Step(
            "Remove half the channels",
            "Now set the granularity to **channel** and the layer scope, and drag *All unlocked "
            "layers* to **50 %**: whole filters and neurons go.",
            _CHANNELS,
            "The channels' removal leaves {nonzero} weights and {flops_share} of the FLOPs, "
            "which a dense kernel really saves: the layers are narrower. The {metric} is "
            "{pruned}, against {unstructured_metric} for 90 % unstructured: structure costs "
            "more accuracy per weight removed.",
            page=PRUNE,
        ),
        Step(
            "Time the compacted model",
            "Open **Ship** again and press **Measure latency**: now a compacted model, with "
            "the removed channels physically gone, runs too.",
            Measured(_CHANNELS, compacted=True),
            "Compacted {compacted_ms}: {compacted_speedup} the dense speed, against "
            "{masked_speedup_90} for 90 % of the weights zeroed. On models this small the call "
            "overhead dominates; the larger the layers, the more of the FLOPs saved turn into "
            "time saved.",
            page=PRUNE,
        ),
    ),
    next="Measure with the validation batch instead of one sample, or try the scale ResNet: "
    "batches and wide layers are where removed channels pay.",
)

RECOVERY = Lesson(
    key="recovery",
    title="Recovery and distillation",
    summary="One-shot against fine-tuned, distilled and gradual (AGP) pruning of the same plan.",
    minutes=5,
    steps=(
        Step(
            "One-shot: 90 % by magnitude",
            "Open **digits-mlp** (*Set it up*: global L1 at 90 %) and look at the Prune page's "
            "accuracy: that is one-shot pruning, no retraining.",
            _MLP_90,
            "One-shot: {pruned} ({drop}).",
            page=PRUNE,
            setup=Setup("digits-mlp"),
            record={"one_shot": "pruned"},
        ),
        Step(
            "Fine-tune",
            "On the Recover page run *Fine-tune* with distillation weight 0.",
            Recovered(distill=False, gradual=False, plan=_MLP_90),
            "Fine-tuned: {finetuned} ({finetuned_drop}).",
            page=RECOVER,
        ),
        Step(
            "Distil from the dense model",
            "Run *Fine-tune* again with a distillation weight of **0.5**: the pruned model also "
            "learns the dense model's soft outputs.",
            Recovered(distill=True, gradual=False, plan=_MLP_90),
            "Distilled: {distilled} ({distilled_drop}). The dense model's probabilities say "
            "which wrong classes are nearly right, a richer signal than the labels alone; on a "
            "small, clean data set it may add little.",
            page=RECOVER,
        ),
        Step(
            "Prune gradually",
            "Run *Gradual (AGP)*: training starts from the dense model and prunes along a cubic "
            "schedule, ending at the same 90 %.",
            Recovered(gradual=True, plan=_MLP_90),
            "One-shot {one_shot}, fine-tuned {finetuned}, distilled {distilled}, gradual "
            "{gradual}: all with the same {nonzero} weights. The Recover page's table compares "
            "them side by side.",
            page=RECOVER,
        ),
    ),
    next="Try 98 %: the gap between the methods grows as the budget tightens.",
)

LESSONS: dict[str, Lesson] = {
    lesson.key: lesson for lesson in (MAGNITUDE, BUDGETS, ZEROS, RECOVERY)
}
