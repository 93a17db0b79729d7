"""Checkpoint discovery, reading and loading, with every user-facing error."""

from __future__ import annotations

import pytest
import torch

from worker.errors import ConceptEvoError
from worker.models.checkpoints import discover_epochs, epoch_of, load_model, load_state_dict, read_checkpoint
from worker.models.registry import build_model

SMALL = {"widths": [8, "M", 16, "M"]}


@pytest.mark.parametrize(
    ("name", "epoch"),
    [
        ("epoch_3.pt", 3),
        ("epoch_003.pth", 3),
        ("epoch3.pt", 3),
        ("model-3.pth", 3),
        ("checkpoint_10.pt", 10),
        ("ckpt_epoch=5.ckpt", 5),
        ("epoch=5-step=1000.ckpt", 5),
        ("resnet18_ep12.pth", 12),
        ("7.pt", 7),
        ("resnet18.pth", None),
        ("best.pt", None),
        ("history.json", None),
        ("epoch_1.txt", None),
        (".epoch_001.pt.tmp", None),
    ],
)
def test_epoch_patterns(name, epoch):
    assert epoch_of(name) == epoch


def test_discover_epochs(tmp_path):
    for name in ["epoch_000.pt", "epoch_002.pt", "epoch_10.pt", "best.pt", "history.json", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    found = discover_epochs(tmp_path)
    assert list(found) == [0, 2, 10]
    assert found[10].name == "epoch_10.pt"


def test_discover_epochs_errors(tmp_path):
    with pytest.raises(ConceptEvoError, match="holds no checkpoint"):
        discover_epochs(tmp_path)
    with pytest.raises(ConceptEvoError, match="does not exist"):
        discover_epochs(tmp_path / "missing")
    (tmp_path / "epoch_3.pt").write_bytes(b"x")
    (tmp_path / "model-3.pth").write_bytes(b"x")
    with pytest.raises(ConceptEvoError, match=r"epoch_3\.pt and model-3\.pth both claim epoch 3"):
        discover_epochs(tmp_path)


@pytest.fixture
def demo_state():
    torch.manual_seed(0)
    return build_model("demo-vgg", 12, **SMALL).state_dict()


def test_load_formats_and_prefix(tmp_path, demo_state):
    raw, nested, model_sd, parallel = (tmp_path / n for n in ("raw.pt", "nested.pt", "msd.pt", "dp.pt"))
    torch.save(demo_state, raw)
    torch.save({"state_dict": demo_state, "epoch": 4, "arch": "demo-vgg", "num_classes": 12}, nested)
    torch.save({"model_state_dict": demo_state, "optimizer_state_dict": {"lr": 0.1}}, model_sd)
    torch.save({f"module.{k}": v for k, v in demo_state.items()}, parallel)
    for path in (raw, nested, model_sd, parallel):
        loaded = load_state_dict(path)
        assert list(loaded) == list(demo_state)
        assert all(torch.equal(loaded[k], demo_state[k]) for k in demo_state)
    _, meta = read_checkpoint(nested)
    assert meta == {"epoch": 4, "arch": "demo-vgg", "num_classes": 12}


def test_load_model_roundtrip_in_eval_mode(tmp_path, demo_state):
    path = tmp_path / "epoch_1.pt"
    torch.save({"state_dict": demo_state, "arch": "demo-vgg", "num_classes": 12, "model_kwargs": SMALL}, path)
    model = load_model("demo-vgg", 12, path, model_kwargs=SMALL)
    assert not model.training
    assert torch.equal(model.state_dict()["features.0.weight"], demo_state["features.0.weight"])
    # arch, class count and factory arguments read from the checkpoint itself
    again = load_model(None, None, path)
    assert torch.equal(again.state_dict()["classifier.5.weight"], demo_state["classifier.5.weight"])


def test_missing_file(tmp_path):
    with pytest.raises(ConceptEvoError, match=r"checkpoint .*nothing\.pt not found"):
        load_state_dict(tmp_path / "nothing.pt")


def test_truncated_checkpoint(tmp_path, demo_state):
    path = tmp_path / "epoch_1.pt"
    torch.save(demo_state, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConceptEvoError, match=r"epoch_1\.pt is corrupt or truncated"):
        load_state_dict(path)
    garbage = tmp_path / "epoch_2.pt"
    garbage.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(ConceptEvoError, match=r"epoch_2\.pt is not a PyTorch checkpoint"):  # issue 12
        load_state_dict(garbage)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "epoch_1.pt"
    torch.save({"lr": 0.1, "epoch": 3}, path)
    with pytest.raises(ConceptEvoError, match=r"epoch_1\.pt is not a state_dict"):
        load_state_dict(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(ConceptEvoError, match="is not a state_dict"):
        load_state_dict(path)


def test_wrong_keys_lists_missing_and_unexpected(tmp_path, demo_state):
    path = tmp_path / "epoch_1.pt"
    state = dict(demo_state)
    state.pop("features.0.weight")
    state["extra.weight"] = torch.zeros(2)
    torch.save(state, path)
    with pytest.raises(ConceptEvoError) as info:
        load_model("demo-vgg", 12, path, model_kwargs=SMALL)
    message = str(info.value)
    assert "epoch_1.pt does not fit architecture demo-vgg" in message
    assert "missing keys [features.0.weight]" in message and "unexpected keys [extra.weight]" in message
    assert "\n" not in message


def test_other_architecture_is_shortened(tmp_path, demo_state):
    path = tmp_path / "epoch_1.pt"
    torch.save(demo_state, path)
    with pytest.raises(
        ConceptEvoError, match=r"does not fit architecture resnet18: missing keys .*\+\d+ more"
    ):
        load_model("resnet18", 12, path)


def test_wrong_class_count(tmp_path):
    path = tmp_path / "epoch_1.pt"
    torch.save(build_model("demo-vgg", 10, **SMALL).state_dict(), path)
    with pytest.raises(ConceptEvoError, match=r"epoch_1\.pt has 10 classes, model demo-vgg expects 12"):
        load_model("demo-vgg", 12, path, model_kwargs=SMALL)


def test_shape_mismatch_elsewhere(tmp_path):
    path = tmp_path / "epoch_1.pt"
    torch.save(build_model("demo-vgg", 12, widths=[4, "M", 16, "M"]).state_dict(), path)
    with pytest.raises(
        ConceptEvoError, match=r"shape mismatch in \[features\.0\.weight \[4, 3, 3, 3\] vs \[8, 3, 3, 3\]"
    ):
        load_model("demo-vgg", 12, path, model_kwargs=SMALL)


def test_torchvision_resnet18_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", 12)
    path = tmp_path / "model-3.pth"
    torch.save({"model_state_dict": model.state_dict()}, path)
    loaded = load_model("resnet18", 12, path)
    assert loaded.fc.out_features == 12 and not loaded.training
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.eval()(x))
