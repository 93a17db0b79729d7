"""§4.4 reversion: against a literal one-channel-at-a-time replacement, and its exact special cases."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from tests.worker.engine.oracles_importance import literal_reverted_logits
from worker.engine.reversion import (
    BIN_LABELS,
    METRICS,
    LabelledImages,
    ReversionTable,
    random_bin,
    rank_bins,
    reversion_accuracy,
    reversion_table,
    reverted_logits,
    topk_hits,
)
from worker.errors import ConceptEvoError
from worker.models.demo_net import demo_vgg
from worker.models.layers import default_layers

SMALL = (8, "M", 8, "M", 16, "M", 16, "M")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pair(num_classes=6):
    torch.manual_seed(0)
    model_t = demo_vgg(num_classes, widths=SMALL, image_size=32).eval()
    torch.manual_seed(1)
    model_t2 = demo_vgg(num_classes, widths=SMALL, image_size=32).eval()
    return model_t, model_t2


def _images(n, seed=2):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_reverted_logits_match_literal_oracle():
    model_t, model_t2 = _pair()
    x = _images(5)
    for spec in default_layers(model_t)[1:3]:
        sets = [[0, 3], [], list(range(spec.channels)), [spec.channels - 1]]
        logits = reverted_logits(model_t, model_t2, spec.name, sets, x)
        assert logits.shape == (4, 5, 6)
        for k, chosen in enumerate(sets):
            expected = literal_reverted_logits(model_t, model_t2, spec.name, chosen, x)
            torch.testing.assert_close(logits[k], expected, rtol=1e-5, atol=1e-5)


def test_empty_bin_changes_nothing():
    model_t, model_t2 = _pair()
    x = _images(4)
    layer = default_layers(model_t)[2].name
    with torch.no_grad():
        plain = model_t2(x)
    torch.testing.assert_close(
        reverted_logits(model_t, model_t2, layer, [[]], x)[0], plain, rtol=1e-5, atol=1e-6
    )
    base, per_layer = reversion_accuracy(model_t, model_t2, {layer: [[]]}, x, [0, 1, 2, 3])
    np.testing.assert_array_equal(per_layer[layer][0], base)


def test_reverting_last_layer_with_shared_downstream_gives_model_t():
    model_t, _ = _pair()
    model_t2 = copy.deepcopy(model_t)
    layers = default_layers(model_t)
    last = layers[-1]
    # Change every parameter up to and including the last chosen layer; share everything downstream.
    upstream = True
    with torch.no_grad():
        for name, module in model_t2.named_modules():
            if upstream and not list(module.children()):
                for p in module.parameters(recurse=False):
                    p.add_(torch.randn_like(p) * 0.3)
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.add_(0.1)
            if name == last.name:
                upstream = False
    x = _images(6)
    with torch.no_grad():
        logits_t, logits_t2 = model_t(x), model_t2(x)
    assert (logits_t - logits_t2).abs().max() > 1e-2  # the change is real
    reverted = reverted_logits(model_t, model_t2, last.name, [list(range(last.channels))], x)[0]
    torch.testing.assert_close(reverted, logits_t, rtol=1e-5, atol=1e-5)


def test_works_after_the_flatten_of_vgg():
    model_t, model_t2 = _pair()
    x = _images(3)
    layer = "classifier.2"  # Linear after Flatten: an (N, C) output
    logits = reverted_logits(model_t, model_t2, layer, [[0, 5], list(range(128))], x)
    torch.testing.assert_close(logits[0], literal_reverted_logits(model_t, model_t2, layer, [0, 5], x))
    torch.testing.assert_close(
        logits[1], literal_reverted_logits(model_t, model_t2, layer, list(range(128)), x)
    )


def test_topk_hits():
    logits = torch.tensor([[0.0, 5, 1, 2, 3, 4, -1], [9, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5, 6]])
    labels = torch.tensor([1, 1, 0])
    # image 0: top-1 hit; image 1: label 1 ranks last-but-one (not top 5); image 2: label 0 ranks last.
    np.testing.assert_array_equal(topk_hits(logits, labels).numpy(), [1, 1])
    np.testing.assert_array_equal(topk_hits(logits[:, :3], labels).numpy(), [1, 3])  # top-3 when 3 classes


def test_rank_bins_and_random_bin():
    importance = np.array([0.1, 0.9, 0.5, 0.5, 0.0, 0.7, 0.2, 0.3])
    mean_s = np.array([0, 0, -1.0, 2.0, 0, 0, 0, 0])
    bins = rank_bins(importance, mean_s)
    assert [b.tolist() for b in bins] == [[1, 5], [3, 2], [7, 6], [0, 4]]
    assert [len(b) for b in rank_bins(np.zeros(10))] == [3, 3, 2, 2]
    assert rank_bins(np.zeros(10))[0].tolist() == [0, 1, 2]
    chosen = random_bin(16, np.random.default_rng(0))
    assert len(chosen) == 4 and len(set(chosen.tolist())) == 4 and chosen.max() < 16


def _tiny_world():
    model_t, model_t2 = _pair(num_classes=3)
    generator = torch.Generator().manual_seed(7)
    train = LabelledImages.from_tensor(torch.randn(24, 3, 32, 32, generator=generator), np.arange(24) % 3)
    val = LabelledImages.from_tensor(torch.randn(12, 3, 32, 32, generator=generator), np.arange(12) % 3)
    return model_t, model_t2, train, val


def test_reversion_table_shape_and_bookkeeping():
    model_t, model_t2, train, val = _tiny_world()
    layers = default_layers(model_t)
    calls = []
    table = reversion_table(
        model_t,
        model_t2,
        layers,
        train,
        val,
        classes=[0, 2],
        reps=2,
        n_images=6,
        batch_size=4,
        label="t→t'",
        progress=lambda f, m: calls.append(f),
    )
    assert isinstance(table, ReversionTable)
    assert table.changes.shape == (2, 2, len(layers), len(BIN_LABELS), len(METRICS))
    assert calls == [0.25, 0.5, 0.75, 1.0]
    np.testing.assert_allclose(table.mean, table.changes.mean(axis=2).mean(axis=0).mean(axis=0))
    assert np.all(table.changes >= -1) and np.all(table.changes <= 1)
    assert np.all((table.base >= 0) & (table.base <= 1))
    # A change is a difference of two accuracies over the same 6 (train) / 4 (val) images.
    np.testing.assert_allclose(np.round(table.changes[..., 0] * 6), table.changes[..., 0] * 6, atol=1e-9)
    np.testing.assert_allclose(np.round(table.changes[..., 2] * 4), table.changes[..., 2] * 4, atol=1e-9)
    markdown = table.to_markdown()
    assert markdown.count("\n") == len(BIN_LABELS) + 1 and "random" in markdown and "val_top5" in markdown
    summary = json.loads(json.dumps(table.to_dict()))
    assert summary["rows"] == list(BIN_LABELS) and np.array(summary["mean"]).shape == (5, 4)
    # Same seed, same table.
    again = reversion_table(
        model_t, model_t2, layers, train, val, classes=[0, 2], reps=2, n_images=6, batch_size=4
    )
    np.testing.assert_array_equal(again.changes, table.changes)


def test_reversion_table_matches_its_parts():
    """One (class, rep, layer) cell recomputed from the pieces: importance bins, literal reversion."""
    from worker.engine.importance import evolution_importance, sample_class_images

    model_t, model_t2, train, val = _tiny_world()
    layers = default_layers(model_t)[:2]
    table = reversion_table(model_t, model_t2, layers, train, val, classes=[1], reps=1, n_images=5, seed=3)
    rng = np.random.default_rng([3, 0, 1])
    train_seed, _ = (int(s) for s in rng.integers(0, 2**31 - 1, size=2))
    idx = sample_class_images(train.targets, 1, 5, seed=train_seed)
    x = train.load(idx)
    importance = evolution_importance(model_t, model_t2, layers, {1: x})
    spec = layers[1]
    cols = importance.layer_slices()[spec.name]
    bins = rank_bins(importance.I[0, cols], importance.mean_S[0, cols])
    with torch.no_grad():
        base = (model_t2(x).argmax(1) == 1).double().mean().item()
    for k in range(4):
        reverted = literal_reverted_logits(model_t, model_t2, spec.name, bins[k].tolist(), x)
        change = (reverted.argmax(1) == 1).double().mean().item() - base
        assert table.changes[0, 0, 1, k, 0] == pytest.approx(change)


def test_identical_models_change_nothing():
    model_t, _, train, val = _tiny_world()
    table = reversion_table(
        model_t, model_t, default_layers(model_t), train, val, classes=[0], reps=1, n_images=4
    )
    assert np.all(table.changes == 0)


def test_bad_input():
    model_t, model_t2, train, val = _tiny_world()
    layers = default_layers(model_t)
    with pytest.raises(ConceptEvoError, match="val set"):
        reversion_table(model_t, model_t2, layers, train, LabelledImages.from_tensor(_images(2), [0, 0]), [1])
    with pytest.raises(ConceptEvoError, match="no classes"):
        reversion_table(model_t, model_t2, layers, train, val, [])
    with pytest.raises(ConceptEvoError, match="reps"):
        reversion_table(model_t, model_t2, layers, train, val, [0], reps=0)
    with pytest.raises(ConceptEvoError, match="out of range"):
        reverted_logits(model_t, model_t2, layers[0].name, [[99]], _images(1))
    with pytest.raises(ConceptEvoError, match="labels"):
        LabelledImages.from_tensor(_images(2), [0])
    other = demo_vgg(6, widths=(8, "M", 12, "M", 16, "M", 16, "M"), image_size=32).eval()
    with pytest.raises(ConceptEvoError, match="epoch t"):
        reverted_logits(model_t, other, layers[1].name, [[0]], _images(1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    model_t, model_t2, train, val = _tiny_world()
    layers = default_layers(model_t)
    on_cpu = reversion_table(model_t, model_t2, layers, train, val, classes=[0, 1], reps=2, n_images=6)
    on_gpu = reversion_table(
        model_t, model_t2, layers, train, val, classes=[0, 1], reps=2, n_images=6, device="cuda"
    )
    assert next(model_t.parameters()).device.type == "cpu"
    assert np.mean(np.abs(on_gpu.changes - on_cpu.changes)) < 0.02
    x = _images(4).cuda()
    logits = reverted_logits(model_t.cuda(), model_t2.cuda(), layers[2].name, [[0, 1], []], x)
    torch.testing.assert_close(
        logits[0].cpu(),
        literal_reverted_logits(model_t.cpu(), model_t2.cpu(), layers[2].name, [0, 1], x.cpu()),
        rtol=1e-3,
        atol=1e-3,
    )
