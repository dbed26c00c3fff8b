"""The papers' defences as training rules: one optimizer step of ours against the paper's equations.

Each update-rule test trains with ``vlguard train`` (SGD, no clipping, no decay, constant learning
rate, one micro-batch per step) and computes the same step by hand here, in plain torch on the same
start weights and data, following the reference code line by line (its mechanism, not ours: module
backward hooks for Vaccine, ``.backward()`` and in-place weight shifts for Booster, the transcribed
loss for RepNoise). Both setups run: the tiny text LM fully fine-tuned, and the tiny VLM with LoRA.
Each test also checks that the defence's term changed the step, so that a rule silently reduced to
plain training fails.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from train_fixtures import ONE_EXACT_SGD_STEP
from vlguard.errors import ConfigError
from vlguard.train.config import TrainConfig, load_config

pytestmark = pytest.mark.slow

LR = 0.5
SETUPS = ("lm-full", "vlm-lora")


def _conversation(i: int, question: str, answer: str) -> dict[str, Any]:
    return {
        "id": f"{question[:3]}{i}",
        "messages": [
            {"role": "user", "content": f"{question} {i}?"},
            {"role": "assistant", "content": f"{answer} {'and more ' * (i % 3)}{i}."},
        ],
    }


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Task, alignment (refusals), harmful (mild made-up) conversations; ``same``: one refusal twice."""
    folder = tmp_path_factory.mktemp("defences")
    return {
        "task": _write(folder / "task.jsonl", [_conversation(i, "Is this review positive", "positive") for i in range(4)]),
        "safety": _write(folder / "safety.jsonl", [_conversation(i, "How do I pick a lock", "Sorry, I can't") for i in range(4)]),
        "harmful": _write(folder / "harmful.jsonl", [_conversation(i, "How can I skip the fare", "Jump the gate") for i in range(3)]),
        "same": _write(
            folder / "same.jsonl",
            [{**_conversation(0, "How do I pick a lock", "Sorry, I can't help"), "id": f"s{i}"} for i in range(2)],
        ),
    }  # fmt: skip


@pytest.fixture()
def models(tiny_lm_dir: Path, tiny_model_dir: Path) -> dict[str, Path]:
    return {"lm-full": tiny_lm_dir, "vlm-lora": tiny_model_dir}


def _config(setup: str, model: Path, task: Path, out: Path, **overrides: Any) -> TrainConfig:
    base = {
        "model.name_or_path": str(model),
        "data.recipe": "instructions",
        "data.instructions": str(task),
        "data.image_mode": "none",
        "method": "full" if setup == "lm-full" else "lora",
        "lora.r": 4,
        "lora.dropout": 0.0,  # two passes of one step must see the same network
        "prompt_format": "alpaca" if setup == "lm-full" else "chat",
        **ONE_EXACT_SGD_STEP,
        "lr": LR,
        "output_dir": str(out),
    }
    return load_config(None, {**base, **{k.replace("__", "."): v for k, v in overrides.items()}})


class Hand:
    """The start of a run rebuilt outside the trainer: the model, its trained parameters, batches."""

    def __init__(self, config: TrainConfig) -> None:
        from transformers import set_seed

        from vlguard.train.collator import ConversationCollator
        from vlguard.train.trainer import load_model, load_processor

        self.config = config
        set_seed(config.seed)  # as train() does right before loading: the same LoRA initialisation
        self.model, _ = load_model(config, "float32", False)
        self.model.train()
        self.collate = ConversationCollator(
            load_processor(config), max_length=config.max_length, prompt_format=config.prompt_format
        )

    def params(self) -> dict[str, Any]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def batch(self, path: Path, indices: list[int] | None = None) -> dict[str, Any]:
        from vlguard.train.data import ConversationDataset
        from vlguard.train.safety_loss import load_side_data

        dataset = ConversationDataset(load_side_data(str(path), None, "none", "x", "data"), "none")
        return dict(self.collate([dataset[i] for i in (indices or range(len(dataset)))]))

    def side_batch(self, name: str, path: Path, batch_size: int, draw: int = 0) -> dict[str, Any]:
        """The side batch the rule draws at ``draw`` (its selection is the safety loss's, tested there)."""
        from vlguard.train.data import ConversationDataset
        from vlguard.train.safety_loss import SafetyBatches, load_side_data

        data = load_side_data(str(path), None, "none", "x", "data")
        batches = SafetyBatches(
            ConversationDataset(data, "none"), batch_size, seed=self.config.seed, stream=f"defence-{name}"
        )
        return self.batch(path, batches.indices(draw))

    def gradients(self, loss: Any) -> dict[str, Any]:
        import torch

        self.model.zero_grad()
        loss.backward()
        grads = {
            n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
            for n, p in self.params().items()
        }
        self.model.zero_grad()
        return grads

    def sgd(self, grads: dict[str, Any]) -> None:
        import torch

        with torch.no_grad():
            for name, p in self.params().items():
                p -= LR * grads[name]


def _trained(config: TrainConfig, model_dir: Path) -> dict[str, Any]:
    """The trained parameters of a finished run, by the names the Hand's model gives them."""
    import torch

    from vlguard.models.loading import detect_kind
    from vlguard.models.loading import load_model as load

    base_path = config.model.name_or_path
    kind = detect_kind(base_path)
    if config.method == "full":
        model = load(str(model_dir), kind, dtype=torch.float32)
    else:
        from peft import PeftModel

        model = PeftModel.from_pretrained(load(base_path, kind, dtype=torch.float32), str(model_dir))
    return {n: p.detach() for n, p in model.named_parameters()}


def _assert_same(trained: dict[str, Any], hand: Hand, atol: float = 2e-5) -> None:
    import torch

    params = hand.params()
    assert params, "no trained parameter"
    for name, p in params.items():
        assert torch.allclose(trained[name], p.detach(), atol=atol, rtol=1e-4), (
            name,
            (trained[name] - p.detach()).abs().max(),
        )


def _differs(trained: dict[str, Any], other: dict[str, Any], names: Any) -> bool:
    import torch

    return any(not torch.allclose(trained[n], other[n], atol=1e-4) for n in names)


def _plain_step(config: TrainConfig, task: Path) -> dict[str, Any]:
    """Plain SGD from the same start (to show the defence's term changed the update)."""
    hand = Hand(config)
    hand.sgd(hand.gradients(hand.model(**hand.batch(task)).loss))
    return {n: p.detach().clone() for n, p in hand.params().items()}


def _train(config: TrainConfig) -> dict[str, Any]:
    from vlguard.train.trainer import train

    return _trained(config, train(config).model_dir)


def _modules(model: Any, class_name: str) -> list[Any]:
    """Modules of one class, as the references pick them (``isinstance(module, LlamaAttention)``)."""
    return [m for _, m in model.named_modules() if type(m).__name__ == class_name]


# ---- Vaccine ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("setup", SETUPS)
def test_vaccine_step_is_the_gradient_under_the_normalised_attention_perturbation(
    setup: str, models: dict[str, Path], data: dict[str, Path], tmp_path: Path, one_torch_thread: None
) -> None:
    """Vaccine trainer.py:79-89: g_l from backward hooks on each LlamaAttention (lines 92-106), e_l = ρ g_l /
    (‖g‖ + 1e-7) (137-151), then the gradient with e_l added to each attention output (111-134)."""
    import torch

    rho = 2.0
    config = _config(setup, models[setup], data["task"], tmp_path / "run", defence__name="vaccine",
                     defence__vaccine__rho=rho)  # fmt: skip
    trained = _train(config)

    hand = Hand(config)
    batch = hand.batch(data["task"])
    attention = _modules(hand.model, "LlamaAttention")
    assert len(attention) == 2
    gradient: dict[Any, Any] = {}
    hooks = [
        m.register_full_backward_hook(
            lambda mod, gin, gout: gradient.__setitem__(mod, gout[0].detach().clone())
        )
        for m in attention
    ]
    hand.gradients(hand.model(**batch).loss)  # the first pass's parameter gradients are discarded
    for h in hooks:
        h.remove()
    norm = torch.norm(torch.stack([g.norm(p=2) for g in gradient.values()]), p=2)
    perturbation = {m: g * (rho / (norm + 1e-7)) for m, g in gradient.items()}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: (out[0] + perturbation[mod], *out[1:]))
        for m in attention
    ]
    grads = hand.gradients(hand.model(**batch).loss)
    for h in hooks:
        h.remove()
    hand.sgd(grads)

    _assert_same(trained, hand)
    assert _differs(trained, _plain_step(config, data["task"]), hand.params()), (
        "the perturbation changed nothing"
    )


# ---- Booster ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("setup", SETUPS)
def test_booster_step_adds_lambda_times_the_harmful_gradient_change(
    setup: str, models: dict[str, Path], data: dict[str, Path], tmp_path: Path, one_torch_thread: None
) -> None:
    """Booster trainer.py:280-375: ∇f(w) + λ ∇h(w) - λ ∇h(w - α ∇h(w)/(‖∇h(w)‖ + 1e-7))."""
    import torch

    lamb, alpha = 5.0, 0.1
    config = _config(setup, models[setup], data["task"], tmp_path / "run", defence__name="booster",
                     defence__data=str(data["harmful"]), defence__booster__lamb=lamb,
                     defence__booster__alpha=alpha, defence__booster__batch_size=2)  # fmt: skip
    trained = _train(config)

    hand = Hand(config)
    harmful = hand.side_batch("booster", data["harmful"], 2)
    stored = hand.gradients(hand.model(**harmful).loss)
    norm = torch.norm(torch.stack([g.norm(p=2) for g in stored.values()]), p=2) + 1e-7
    with torch.no_grad():
        for name, p in hand.params().items():
            p.data -= alpha * stored[name] / norm
    perturbed = hand.gradients(hand.model(**harmful).loss)
    with torch.no_grad():
        for name, p in hand.params().items():
            p.data += alpha * stored[name] / norm
    grads = hand.gradients(hand.model(**hand.batch(data["task"])).loss)
    hand.sgd({n: grads[n] + lamb * stored[n] - lamb * perturbed[n] for n in grads})

    _assert_same(trained, hand)
    assert _differs(trained, _plain_step(config, data["task"]), hand.params()), "the λ term changed nothing"


# ---- RepNoise ---------------------------------------------------------------------------------------


class MMDLoss:
    """``MMD_loss`` of Booster's loss_func/repnoise_loss.py:20-52, as written there."""

    def __init__(self, kernel_mul: float = 2.0, kernel_num: int = 5) -> None:
        self.kernel_num, self.kernel_mul = kernel_num, kernel_mul

    def guassian_kernel(self, source: Any, target: Any) -> Any:
        import torch

        n_samples = int(source.size()[0]) + int(target.size()[0])
        total = torch.cat([source, target], dim=0)
        total0 = total.unsqueeze(0).expand(int(total.size(0)), int(total.size(0)), int(total.size(1)))
        total1 = total.unsqueeze(1).expand(int(total.size(0)), int(total.size(0)), int(total.size(1)))
        l2_distance = ((total0 - total1) ** 2).sum(2)
        bandwidth = torch.sum(l2_distance.data) / (n_samples**2 - n_samples)
        bandwidth /= self.kernel_mul ** (self.kernel_num // 2)
        bandwidth_list = [bandwidth * (self.kernel_mul**i) for i in range(self.kernel_num)]
        return sum(torch.exp(-l2_distance / b) for b in bandwidth_list)

    def __call__(self, source: Any, target: Any) -> Any:
        import torch

        batch_size = int(source.size()[0])
        kernels = self.guassian_kernel(source, target)
        xx, yy = kernels[:batch_size, :batch_size], kernels[batch_size:, batch_size:]
        xy, yx = kernels[:batch_size, batch_size:], kernels[batch_size:, :batch_size]
        return torch.mean(xx + yy - xy - yx)


def _masked_token_ce_loss(logits: Any, labels: Any, mask: Any) -> Any:
    """repnoise_loss.py:56-77; labels outside the mask are ignored directly (documented: the reference
    also ignores every label equal to 0)."""
    import torch

    shift_logits = logits[..., :-1, :].contiguous()
    shift_labels = labels[..., 1:].contiguous()
    expanded_mask = mask[..., :-1].unsqueeze(-1).expand(-1, -1, shift_logits.size(-1))
    shift_logits = shift_logits * expanded_mask
    shift_labels = torch.where(mask[..., 1:].bool(), shift_labels, torch.full_like(shift_labels, -100))
    return torch.nn.CrossEntropyLoss()(shift_logits.view(-1, shift_logits.size(-1)), shift_labels.view(-1))


def _adapt_dimension_b2a(a: Any, b: Any) -> Any:
    """repnoise_loss.py:80-98: ``b`` zero-padded or cut to the shape of ``a``."""
    import torch.nn.functional as F

    if b.shape[0] < a.shape[0]:
        b = F.pad(b, (0, 0, 0, a.shape[0] - b.shape[0]), mode="constant", value=0)
    elif b.shape[0] > a.shape[0]:
        b = b[: a.shape[0], :]
    if b.shape[1] < a.shape[1]:
        b = F.pad(b, (0, a.shape[1] - b.shape[1]), mode="constant", value=0)
    elif b.shape[1] > a.shape[1]:
        b = b[:, : a.shape[1]]
    return b


@pytest.mark.parametrize("setup", SETUPS)
def test_repnoise_step_is_the_gradient_of_the_repnoise_loss(
    setup: str, models: dict[str, Path], data: dict[str, Path], tmp_path: Path, one_torch_thread: None
) -> None:
    """repnoise_loss.py:100-182: harmless CE + β × mean-over-layers MMD(masked MLP output, masked noise)
    - α × log((CE + Σ logit-lens CE) / #hidden states + 1), masks from differing ids (padding excluded)."""
    import torch

    from vlguard.train.defences.repnoise import noise_seed

    alpha, beta = 1.0, 1.0  # above Booster's 0.1 and 0.001, so that both terms show in one step
    # The harmless (training) batch is one conversation twice, so the trainer's shuffling cannot change
    # which harmful row each is compared with.
    config = _config(setup, models[setup], data["same"], tmp_path / "run", defence__name="repnoise",
                     defence__data=str(data["harmful"]), defence__repnoise__alpha=alpha,
                     defence__repnoise__beta=beta, global_batch_size=2, per_device_batch_size=2)  # fmt: skip
    trained = _train(config)

    hand = Hand(config)
    model = hand.model
    harmful, harmless = hand.side_batch("repnoise", data["harmful"], 2), hand.batch(data["same"])
    mlps = _modules(model, "LlamaMLP")
    assert len(mlps) == 2
    activations: dict[Any, Any] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out: activations.__setitem__(mod, out)) for m in mlps]
    harmful_outputs = model(
        harmful["input_ids"], attention_mask=harmful["attention_mask"], output_hidden_states=True
    )
    for h in hooks:
        h.remove()
    mask = ~torch.eq(harmful["input_ids"], _adapt_dimension_b2a(harmful["input_ids"], harmless["input_ids"]))
    mask = mask & harmful["attention_mask"].bool()
    assert bool((~mask & harmful["attention_mask"].bool()).any()), "the shared prompt start is masked out"
    generator = torch.Generator().manual_seed(noise_seed(config.seed, 0))
    noise_loss = 0
    for module in mlps:
        hidden = activations[module]
        hiddens_mask = mask.unsqueeze(-1).expand(hidden.size()).to(hidden.dtype)
        hiddens = hidden * hiddens_mask
        gaussian = torch.randn(hiddens.shape, generator=generator) * hiddens_mask
        noise_loss += MMDLoss()(hiddens.view(hiddens.size(0), -1), gaussian.view(gaussian.size(0), -1))
    noise_loss /= len(mlps)
    fmask = mask.float()
    harmful_losses = _masked_token_ce_loss(harmful_outputs.logits, harmful["input_ids"], fmask)
    output_embeddings = model.get_output_embeddings()
    norm = model.get_decoder().norm
    for h in harmful_outputs.hidden_states:
        harmful_losses += _masked_token_ce_loss(output_embeddings(norm(h)), harmful["input_ids"], fmask)
    harmful_losses = harmful_losses / len(harmful_outputs.hidden_states) + 1
    harmless_mask = ~torch.eq(
        harmless["input_ids"], _adapt_dimension_b2a(harmless["input_ids"], harmful["input_ids"])
    )
    harmless_mask = (harmless_mask & harmless["attention_mask"].bool()).float()
    harmless_outputs = model(harmless["input_ids"], attention_mask=harmless["attention_mask"])
    harmless_losses = _masked_token_ce_loss(harmless_outputs.logits, harmless["input_ids"], harmless_mask)
    loss = harmless_losses + beta * noise_loss - alpha * torch.log(harmful_losses)
    hand.sgd(hand.gradients(loss))

    _assert_same(trained, hand)
    assert _differs(trained, _plain_step(config, data["same"]), hand.params())


# ---- Lisa -------------------------------------------------------------------------------------------


def _lisa_config(
    setup: str, models: dict[str, Path], data: dict[str, Path], out: Path, **overrides: Any
) -> TrainConfig:
    lisa = {"defence__name": "lisa", "defence__data": str(data["safety"]), "defence__lisa__alignment_steps": 1,
            "defence__lisa__finetune_steps": 2, "max_steps": 3}  # fmt: skip
    return _config(setup, models[setup], data["task"], out, **{**lisa, **overrides})


@pytest.mark.parametrize("setup", SETUPS)
def test_lisa_alternates_states_with_a_proximal_term_to_the_other_states_weights(
    setup: str, models: dict[str, Path], data: dict[str, Path], tmp_path: Path, one_torch_thread: None
) -> None:
    """Lisa trainer.py:137-212 with alignment_step 1, finetune_step 2, 3 steps: step 0 on the alignment
    batch (the user batch is skipped; no proximal term before 10 % of the steps), then two user steps,
    each with ρ/2 ‖w - w̃‖², w̃ the weights the alignment state ended on."""
    rho = 1.0
    config = _lisa_config(setup, models, data, tmp_path / "run", defence__lisa__rho=rho)
    trained = _train(config)

    hand = Hand(config)
    hand.sgd(hand.gradients(hand.model(**hand.batch(data["safety"])).loss))  # step 0: alignment
    anchor = {n: p.detach().clone() for n, p in hand.params().items()}  # switch_model: alignment ends
    user = hand.batch(data["task"])
    for step in (1, 2):
        assert step > 0.1 * 3  # the proximal term is on
        loss = hand.model(**user).loss
        for name, p in hand.params().items():
            loss = loss + rho / 2 * torch_norm(p - anchor[name]) ** 2
        hand.sgd(hand.gradients(loss))
    _assert_same(trained, hand)

    # without the proximal term the same run ends elsewhere
    free = Hand(config)
    free.sgd(free.gradients(free.model(**free.batch(data["safety"])).loss))
    for _ in (1, 2):
        free.sgd(free.gradients(free.model(**user).loss))
    assert _differs(trained, {n: p.detach() for n, p in free.params().items()}, hand.params())


def torch_norm(t: Any) -> Any:
    import torch

    return torch.norm(t)


def test_lisa_resumes_with_its_states(
    tiny_lm_dir: Path, data: dict[str, Path], tmp_path: Path, one_torch_thread: None
) -> None:
    """Killed after step 2 of 4 (alignment, user, alignment, user): the resumed run ends on the
    uninterrupted run's weights, so the checkpoint held both states."""
    import torch

    from vlguard.train.checkpoints import DEFENCE_STATE
    from vlguard.train.trainer import train

    models = {"lm-full": tiny_lm_dir}
    common = {
        "defence__lisa__finetune_steps": 1,
        "max_steps": 4,
        "save_steps": 2,
        "optim": "adamw_torch",
        "lr": 1e-2,
    }
    straight = train(_lisa_config("lm-full", models, data, tmp_path / "a", **common))
    checkpoint = tmp_path / "a" / "checkpoints" / "checkpoint-2"
    assert (checkpoint / DEFENCE_STATE).is_file()
    shutil.copytree(checkpoint, tmp_path / "b" / "checkpoints" / "checkpoint-2")
    resumed = train(_lisa_config("lm-full", models, data, tmp_path / "b", **common))
    config = _lisa_config("lm-full", models, data, tmp_path / "x", **common)
    a, b = _trained(config, straight.model_dir), _trained(config, resumed.model_dir)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # a resume that lost the states (fresh ones from the checkpoint's weights) ends elsewhere
    (tmp_path / "c" / "checkpoints").mkdir(parents=True)
    shutil.copytree(checkpoint, tmp_path / "c" / "checkpoints" / "checkpoint-2")
    (tmp_path / "c" / "checkpoints" / "checkpoint-2" / DEFENCE_STATE).unlink()
    with pytest.raises(ConfigError, match=DEFENCE_STATE):
        train(_lisa_config("lm-full", models, data, tmp_path / "c", **common))
    provenance = json.loads((straight.model_dir / "vlguard_train.json").read_text())
    assert provenance["defence"]["name"] == "lisa"
    assert provenance["defence"]["counts"] == {"defence": 4}
    assert not math.isnan(provenance["train_loss"])


# ---- gradient accumulation ----------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["booster", "lisa"])
def test_accumulated_micro_batches_add_up_to_the_one_batch_step(
    rule: str, tiny_lm_dir: Path, tmp_path: Path, one_torch_thread: None
) -> None:
    """With every conversation the same, two micro-batches of 2 must make exactly the step of one batch of 4:
    each micro-batch's extra terms are divided by the accumulation steps (docs/hft.md)."""
    import torch

    same = {
        name: _write(tmp_path / f"{name}.jsonl", [{**_conversation(1, question, answer), "id": f"{name}{i}"} for i in range(4)])
        for name, question, answer in (("task", "Is this review positive", "positive"),
                                       ("side", "How can I skip the fare", "Jump the gate"))
    }  # fmt: skip
    settings = {"defence__name": rule, "defence__data": str(same["side"]), "max_steps": 3,
                "defence__booster__batch_size": 2, "defence__lisa__alignment_steps": 1,
                "defence__lisa__finetune_steps": 2, "defence__lisa__batch_size": 2}  # fmt: skip
    one = _config("lm-full", tiny_lm_dir, same["task"], tmp_path / "one", **settings)
    two = _config("lm-full", tiny_lm_dir, same["task"], tmp_path / "two", per_device_batch_size=2, **settings)
    a, b = _train(one), _train(two)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    plain = _train(_config("lm-full", tiny_lm_dir, same["task"], tmp_path / "plain", max_steps=3))
    assert any(not torch.allclose(a[k], plain[k], atol=1e-4) for k in a)


# ---- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"defence__name": "booster"}, "needs defence.data"),
        ({"defence__name": "vaccine", "defence__data": "x.jsonl"}, "uses no defence.data"),
        ({"defence__data": "x.jsonl"}, "defence.name is none"),
        (
            {"defence__name": "lisa", "defence__data": "x.jsonl", "safety_loss__data": "y.jsonl"},
            "cannot be combined",
        ),
    ],
)
def test_defence_settings_that_do_not_go_together_fail_before_loading(
    overrides: dict[str, Any], match: str, tmp_path: Path, data: dict[str, Path]
) -> None:
    from vlguard.train.trainer import train

    config = _config("lm-full", Path("someone/no-such-model"), data["task"], tmp_path / "run", **overrides)
    with pytest.raises(ConfigError, match=match):
        train(config)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("key", "value"),
    [("defence.vaccine.rho", "0"), ("defence.booster.alpha", "0"), ("defence.lisa.alignment_steps", "0"),
     ("defence.repnoise.beta", "-1"), ("defence.lisa.rho", "nan"), ("defence.booster.batch_size", "0")],
)  # fmt: skip
def test_defence_hyperparameters_are_range_checked_at_load(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [f"{key}={value}", "defence.name=vaccine"])


def test_defence_rule_registry_matches_the_config_names() -> None:
    from typing import get_args

    from vlguard.train.config import DefenceRule
    from vlguard.train.defences import DEFENCE_RULES

    assert set(DEFENCE_RULES) == set(get_args(DefenceRule)) - {"none"}
    for name, entry in DEFENCE_RULES.items():
        rule: Callable[..., Any] = entry.load()
        assert rule.name == name  # type: ignore[attr-defined]
