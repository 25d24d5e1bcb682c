"""Writes a random-valued DINO checkpoint, its tensors named as detrex and Align-DETR name them.

Usage: make_detrex_dino_checkpoint.py OUT_DIR [--depth 18] [--embed-dim 128] [--heads 4]
           [--points 4] [--encoder-layers 2] [--decoder-layers 2] [--ffn-dim 512]
           [--queries 100] [--classes 8]

The defaults are configs/align_dino_tiny.yaml's sizes; pass --depth 50 --embed-dim 256 --heads 8
--encoder-layers 6 --decoder-layers 6 --ffn-dim 2048 --queries 900 --classes 80 for detrex's
dino_r50_4scale.

OUT_DIR/detrex_dino.pth   {"model": state_dict, "iteration": ...}, laid out as detectron2's
                          Checkpointer lays out a checkpoint
OUT_DIR/bad_alias.pth     the same, except that transformer.decoder.bbox_embed.1.layers.2.bias is
                          a separate tensor, bbox_embed.1.layers.2.bias plus 1

The names come from a module tree laid out like detrex's, not from a list of our C++ names:
detectron2's ResNet (BasicStem, res2..res5, conv{k}.norm, shortcut) with frozen batch norms,
detrex's ChannelMapper (ConvNormAct: conv + GroupNorm), the DINO transformer (layers holding
attentions / ffns / norms lists, the decoder's ref_point_head and norm, level_embeds, tgt_embed,
enc_output, enc_output_norm) and the detector's per-layer heads and label_enc. As in detrex, the
decoder holds the detector's head lists themselves, so state_dict() lists each head tensor twice,
once under transformer.decoder.
"""

import argparse
from pathlib import Path

import torch
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    # detectron2's: four buffers, no parameters and no num_batches_tracked.
    def __init__(self, channels):
        super().__init__()
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))


class Conv2dWithNorm(nn.Conv2d):
    # detectron2's Conv2d keeps its norm as a child named "norm".
    def __init__(self, cin, cout, kernel, stride=1):
        super().__init__(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.norm = FrozenBatchNorm2d(cout)


class BasicStem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = Conv2dWithNorm(3, 64, 7, 2)


class Block(nn.Module):
    # detectron2's BasicBlock (two 3x3 convs) or BottleneckBlock (1x1, 3x3 with the stride, 1x1).
    def __init__(self, cin, planes, stride, bottleneck):
        super().__init__()
        cout = planes * 4 if bottleneck else planes
        if cin != cout or stride != 1:
            self.shortcut = Conv2dWithNorm(cin, cout, 1, stride)
        if bottleneck:
            self.conv1 = Conv2dWithNorm(cin, planes, 1)
            self.conv2 = Conv2dWithNorm(planes, planes, 3, stride)
            self.conv3 = Conv2dWithNorm(planes, cout, 1)
        else:
            self.conv1 = Conv2dWithNorm(cin, planes, 3, stride)
            self.conv2 = Conv2dWithNorm(planes, planes, 3)


class ResNet(nn.Module):
    BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}

    def __init__(self, depth):
        super().__init__()
        bottleneck = depth >= 50
        self.stem = BasicStem()
        cin = 64
        self.out_channels = []
        for i, count in enumerate(self.BLOCKS[depth]):
            planes = 64 * 2**i
            blocks = []
            for b in range(count):
                stride = 2 if (b == 0 and i > 0) else 1
                blocks.append(Block(cin, planes, stride, bottleneck))
                cin = planes * 4 if bottleneck else planes
            self.add_module(f"res{i + 2}", nn.Sequential(*blocks))
            self.out_channels.append(cin)


class ConvNormAct(nn.Module):
    def __init__(self, cin, cout, kernel, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=True)
        self.norm = nn.GroupNorm(32, cout)


class ChannelMapper(nn.Module):
    # res3, res4, res5 by 1x1 convs, then one stride-2 3x3 conv on res5 for the fourth level.
    def __init__(self, in_channels, dim):
        super().__init__()
        self.convs = nn.ModuleList(ConvNormAct(c, dim, 1, 1) for c in in_channels)
        self.extra_convs = nn.ModuleList([ConvNormAct(in_channels[-1], dim, 3, 2)])


class MLP(nn.Module):
    def __init__(self, cin, hidden, cout, num_layers):
        super().__init__()
        dims = [cin] + [hidden] * (num_layers - 1) + [cout]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))


class FFN(nn.Module):
    # detrex's: Sequential(Sequential(Linear, act, Dropout), Linear, Dropout).
    def __init__(self, dim, hidden):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(0.0)),
            nn.Linear(hidden, dim),
            nn.Dropout(0.0),
        )


class MultiScaleDeformableAttention(nn.Module):
    def __init__(self, dim, heads, levels, points):
        super().__init__()
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)


class MultiheadAttention(nn.Module):
    # detrex's wrapper around torch's attention, held as "attn".
    def __init__(self, dim, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)


class TransformerLayer(nn.Module):
    # detrex's BaseTransformerLayer: one list each of attentions, ffns and norms.
    def __init__(self, attentions, ffn, num_norms, dim):
        super().__init__()
        self.attentions = nn.ModuleList(attentions)
        self.ffns = nn.ModuleList([ffn])
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_norms))


class Encoder(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(
                [MultiScaleDeformableAttention(a.embed_dim, a.heads, 4, a.points)],
                FFN(a.embed_dim, a.ffn_dim),
                2,
                a.embed_dim,
            )
            for _ in range(a.encoder_layers)
        )


class Decoder(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(
                [
                    MultiheadAttention(a.embed_dim, a.heads),
                    MultiScaleDeformableAttention(a.embed_dim, a.heads, 4, a.points),
                ],
                FFN(a.embed_dim, a.ffn_dim),
                3,
                a.embed_dim,
            )
            for _ in range(a.decoder_layers)
        )
        self.ref_point_head = MLP(2 * a.embed_dim, a.embed_dim, a.embed_dim, 2)
        self.bbox_embed = None
        self.class_embed = None
        self.norm = nn.LayerNorm(a.embed_dim)


class DINOTransformer(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.encoder = Encoder(a)
        self.decoder = Decoder(a)
        self.level_embeds = nn.Parameter(torch.empty(4, a.embed_dim))
        self.tgt_embed = nn.Embedding(a.queries, a.embed_dim)
        self.enc_output = nn.Linear(a.embed_dim, a.embed_dim)
        self.enc_output_norm = nn.LayerNorm(a.embed_dim)


class DINO(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.backbone = ResNet(a.depth)
        self.neck = ChannelMapper(self.backbone.out_channels[1:], a.embed_dim)
        self.transformer = DINOTransformer(a)
        heads = a.decoder_layers + 1  # one per decoder layer and one for the encoder proposals
        self.class_embed = nn.ModuleList(nn.Linear(a.embed_dim, a.classes) for _ in range(heads))
        self.bbox_embed = nn.ModuleList(MLP(a.embed_dim, a.embed_dim, 4, 3) for _ in range(heads))
        self.label_enc = nn.Embedding(a.classes, a.embed_dim)
        # The same lists, not copies: the decoder refines boxes with the detector's heads.
        self.transformer.decoder.class_embed = self.class_embed
        self.transformer.decoder.bbox_embed = self.bbox_embed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--depth", type=int, default=18)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--encoder-layers", type=int, default=2)
    parser.add_argument("--decoder-layers", type=int, default=2)
    parser.add_argument("--ffn-dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--classes", type=int, default=8)
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = DINO(args)
    with torch.no_grad():
        # Distinct random values everywhere, buffers included, so a tensor loaded into the wrong
        # place shows.
        for tensor in list(model.parameters()) + list(model.buffers()):
            tensor.uniform_(0.5, 1.5)
    state = model.state_dict()
    torch.save({"model": state, "iteration": 89999}, out / "detrex_dino.pth")

    bad = dict(state)
    name = "transformer.decoder.bbox_embed.1.layers.2.bias"
    bad[name] = state[name].clone() + 1.0
    torch.save({"model": bad, "iteration": 89999}, out / "bad_alias.pth")


if __name__ == "__main__":
    main()
