"""Writes a random-valued checkpoint laid out as the official DINO (IDEA-Research/DINO) writes one.

Usage: make_official_dino_checkpoint.py OUT_DIR [--depth 18] [--embed-dim 128] [--heads 4]
           [--points 4] [--encoder-layers 2] [--decoder-layers 2] [--ffn-dim 512]
           [--queries 100]

The defaults are configs/align_dino_tiny.yaml's sizes; pass --depth 50 --embed-dim 256 --heads 8
--encoder-layers 6 --decoder-layers 6 --ffn-dim 2048 --queries 900 for DINO-4scale R50.

OUT_DIR/checkpoint_official.pth  {"model": state_dict, "optimizer": ..., "epoch": 11,
                                  "args": argparse.Namespace}, as the official main.py saves it

The names come from a module tree laid out like the official code's, not from a list of our C++
names: the backbone as Joiner(Backbone, position embedding), its body torchvision's ResNet cut by
IntermediateLayerGetter (frozen batch norms), input_proj as Sequential(conv, GroupNorm) per level,
the deformable transformer's layers with their sublayers named by role (self_attn, cross_attn,
linear1/2, norm1..3), the decoder's ref_point_head and norm, level_embed, tgt_embed, enc_output,
enc_output_norm, and two-stage heads enc_out_class_embed / enc_out_bbox_embed. As in the official
code, one class head and one box head are shared by every decoder layer and also registered in
the decoder, so state_dict() lists them under each layer's name and again under
transformer.decoder. COCO's 91 class rows (index = category id), 92 rows in the label book.
"""

import argparse
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops.misc import FrozenBatchNorm2d

NUM_CLASSES = 91  # the official COCO layout: a row per category id, 0 and the unused ids too
LABEL_BOOK = NUM_CLASSES + 1  # dn_labelbook_size + 1


class MSDeformAttn(nn.Module):
    def __init__(self, d, heads, levels, points):
        super().__init__()
        self.sampling_offsets = nn.Linear(d, heads * levels * points * 2)
        self.attention_weights = nn.Linear(d, heads * levels * points)
        self.value_proj = nn.Linear(d, d)
        self.output_proj = nn.Linear(d, d)


class MLP(nn.Module):
    def __init__(self, cin, hidden, cout, layers):
        super().__init__()
        dims = [cin] + [hidden] * (layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [cout]))


class EncoderLayer(nn.Module):
    def __init__(self, d, ffn, heads, levels, points):
        super().__init__()
        self.self_attn = MSDeformAttn(d, heads, levels, points)
        self.norm1 = nn.LayerNorm(d)
        self.linear1 = nn.Linear(d, ffn)
        self.linear2 = nn.Linear(ffn, d)
        self.norm2 = nn.LayerNorm(d)


class DecoderLayer(nn.Module):
    def __init__(self, d, ffn, heads, levels, points):
        super().__init__()
        self.cross_attn = MSDeformAttn(d, heads, levels, points)
        self.norm1 = nn.LayerNorm(d)
        self.self_attn = nn.MultiheadAttention(d, heads)
        self.norm2 = nn.LayerNorm(d)
        self.linear1 = nn.Linear(d, ffn)
        self.linear2 = nn.Linear(ffn, d)
        self.norm3 = nn.LayerNorm(d)


class Encoder(nn.Module):
    def __init__(self, n, *sizes):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(*sizes) for _ in range(n))


class Decoder(nn.Module):
    def __init__(self, n, d, *sizes):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(d, *sizes) for _ in range(n))
        self.norm = nn.LayerNorm(d)
        self.ref_point_head = MLP(2 * d, d, d, 2)
        self.bbox_embed = None
        self.class_embed = None


class Transformer(nn.Module):
    def __init__(self, a, levels):
        super().__init__()
        d = a.embed_dim
        sizes = (a.ffn_dim, a.heads, levels, a.points)
        self.encoder = Encoder(a.encoder_layers, d, *sizes)
        self.decoder = Decoder(a.decoder_layers, d, *sizes)
        self.level_embed = nn.Parameter(torch.empty(levels, d))
        self.tgt_embed = nn.Embedding(a.queries, d)
        self.enc_output = nn.Linear(d, d)
        self.enc_output_norm = nn.LayerNorm(d)
        self.enc_out_class_embed = None
        self.enc_out_bbox_embed = None


class Backbone(nn.Module):
    def __init__(self, depth):
        super().__init__()
        resnet = getattr(torchvision.models, f"resnet{depth}")(norm_layer=FrozenBatchNorm2d)
        self.body = IntermediateLayerGetter(
            resnet, return_layers={"layer2": "0", "layer3": "1", "layer4": "2"})


class Joiner(nn.Sequential):
    # The official backbone: Sequential(backbone, position embedding); the sine embedding has no
    # parameters, so only backbone.0.* appears.
    def __init__(self, depth):
        super().__init__(Backbone(depth), nn.Identity())


class Dino(nn.Module):
    def __init__(self, a):
        super().__init__()
        d = a.embed_dim
        channels = [128, 256, 512] if a.depth in (18, 34) else [512, 1024, 2048]
        levels = len(channels) + 1
        self.transformer = Transformer(a, levels)
        self.label_enc = nn.Embedding(LABEL_BOOK, d)
        self.backbone = Joiner(a.depth)
        projections = [nn.Sequential(nn.Conv2d(c, d, 1), nn.GroupNorm(32, d)) for c in channels]
        projections.append(
            nn.Sequential(nn.Conv2d(channels[-1], d, 3, stride=2, padding=1), nn.GroupNorm(32, d)))
        self.input_proj = nn.ModuleList(projections)
        class_head = nn.Linear(d, NUM_CLASSES)
        box_head = MLP(d, d, 4, 3)
        self.class_embed = nn.ModuleList([class_head] * a.decoder_layers)
        self.bbox_embed = nn.ModuleList([box_head] * a.decoder_layers)
        self.transformer.decoder.class_embed = self.class_embed
        self.transformer.decoder.bbox_embed = self.bbox_embed
        self.transformer.enc_out_class_embed = nn.Linear(d, NUM_CLASSES)
        self.transformer.enc_out_bbox_embed = MLP(d, d, 4, 3)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out_dir", type=Path)
    p.add_argument("--depth", type=int, default=18)
    p.add_argument("--embed-dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--points", type=int, default=4)
    p.add_argument("--encoder-layers", type=int, default=2)
    p.add_argument("--decoder-layers", type=int, default=2)
    p.add_argument("--ffn-dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=100)
    a = p.parse_args()

    torch.manual_seed(0)
    model = Dino(a)
    # Distinct random values everywhere (buffers too), so that a tensor loaded into the wrong
    # place cannot pass for the right one.
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            t.copy_(torch.randn_like(t.float()).to(t.dtype) if t.is_floating_point() else t)
    state = model.state_dict()
    checkpoint = {
        "model": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]},
        "epoch": 11,
        "args": argparse.Namespace(num_classes=NUM_CLASSES, dn_labelbook_size=NUM_CLASSES),
    }
    a.out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, a.out_dir / "checkpoint_official.pth")


if __name__ == "__main__":
    main()
