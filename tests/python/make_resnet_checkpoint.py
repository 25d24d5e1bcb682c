"""Writes a torchvision ResNet-18 with random weights and its features for a fixed input.

Usage: make_resnet_checkpoint.py OUT_DIR

OUT_DIR/resnet18.pth       the state_dict (an OrderedDict, torch.save's zip format)
OUT_DIR/checkpoint.pth     the same state_dict inside {"model": ..., "epoch": 3}
OUT_DIR/features.pth       {"input", "layer2", "layer3", "layer4"} as torch.save'd tensors
OUT_DIR/protocol4.pth      layer1's state_dict plus views sharing one storage and a half tensor,
                           saved with pickle protocol 4 (framing, memoize, stack globals)

The batch norms get random statistics and affine terms so that a wrong frozen-BN formula or a
mis-assigned buffer shows in the features. The model is in eval mode, where BatchNorm2d computes
exactly what a frozen batch norm with eps 1e-5 does.
"""

import sys
from pathlib import Path

import torch
import torchvision


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    model.eval()

    image = torch.randn(2, 3, 96, 128)
    features = {"input": image}
    with torch.no_grad():
        x = model.maxpool(model.relu(model.bn1(model.conv1(image))))
        x = model.layer1(x)
        for name in ("layer2", "layer3", "layer4"):
            x = getattr(model, name)(x)
            features[name] = x

    torch.save(model.state_dict(), out / "resnet18.pth")
    torch.save({"model": model.state_dict(), "epoch": 3}, out / "checkpoint.pth")
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
