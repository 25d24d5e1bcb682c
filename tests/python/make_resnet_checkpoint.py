"""Writes torchvision ResNet-18 and -50 with random weights and their features for a fixed input.

Usage: make_resnet_checkpoint.py OUT_DIR

OUT_DIR/resnet18.pth       the state_dict (an OrderedDict, torch.save's zip format)
OUT_DIR/checkpoint.pth     the same state_dict inside a training checkpoint dict with other
                           Python objects beside it
OUT_DIR/features.pth       {"input", "layer2", "layer3", "layer4"} as torch.save'd tensors
OUT_DIR/resnet50.pth, features50.pth   the same for a ResNet-50 (Bottleneck blocks)
OUT_DIR/protocol4.pth      layer1's state_dict plus views sharing one storage and a half tensor,
                           saved with pickle protocol 4 (framing, memoize, stack globals)

The batch norms get random statistics and affine terms so that a wrong frozen-BN formula or a
mis-assigned buffer shows in the features. The model is in eval mode, where BatchNorm2d computes
exactly what a frozen batch norm with eps 1e-5 does.
"""

import argparse
import fractions
import sys
from pathlib import Path

import torch
import torchvision


def random_model(name: str) -> torch.nn.Module:
    model = getattr(torchvision.models, name)()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def features_of(model: torch.nn.Module, image: torch.Tensor) -> dict:
    features = {"input": image}
    with torch.no_grad():
        x = model.maxpool(model.relu(model.bn1(model.conv1(image))))
        x = model.layer1(x)
        for name in ("layer2", "layer3", "layer4"):
            x = getattr(model, name)(x)
            features[name] = x
    return features


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    image = torch.randn(2, 3, 96, 128)
    model = random_model("resnet18")
    features = features_of(model, image)
    resnet50 = random_model("resnet50")
    torch.save(resnet50.state_dict(), out / "resnet50.pth")
    torch.save(features_of(resnet50, image), out / "features50.pth")

    torch.save(model.state_dict(), out / "resnet18.pth")
    checkpoint = {
        "model": model.state_dict(),
        "epoch": 3,
        "args": argparse.Namespace(lr=0.1, steps=[1, 2]),
        "ratio": fractions.Fraction(1, 3),
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9).state_dict(),
    }
    torch.save(checkpoint, out / "checkpoint.pth")
    torch.save(features, out / "features.pth")

    extra = model.layer1.state_dict()
    base = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    extra["base"] = base
    extra["column"] = base[:, 1]  # offset 1, stride 4 into base's storage
    extra["half"] = torch.tensor([0.5, -2.0, 65504.0], dtype=torch.float16)
    extra["long"] = torch.tensor([-(2**40), 7])
    torch.save(extra, out / "protocol4.pth", pickle_protocol=4)


if __name__ == "__main__":
    main()
