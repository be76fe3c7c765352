#!/usr/bin/env python3
"""A real torch.save of a LoCoOp prompt-learner checkpoint, as LoCoOp's Dassl trainer writes it.

Needs PyTorch (Debian's python3-torch 1.13 was used: `apt-get install python3-torch`, then run with
/usr/bin/python3). Writes test/fixtures/locoop-tiny/dassl/prompt_learner/model.pth.tar-2 from the
n = 16 context of test/fixtures/locoop-tiny/reference.safetensors (run locoop_reference.py first).

What Dassl's save_model / save_checkpoint store, for a CoOp-style PromptLearner (ctx parameter,
token_prefix / token_suffix buffers) trained with SGD and a cosine schedule behind Dassl's constant
warm-up wrapper:
  {"state_dict": OrderedDict(ctx, token_prefix, token_suffix), "epoch": 2,
   "optimizer": SGD.state_dict() (momentum buffers), "scheduler": warm-up.state_dict(),
   "val_result": float}
The warm-up scheduler's state_dict is its __dict__ less the optimizer, so it holds its successor,
a pickled torch.optim.lr_scheduler.CosineAnnealingLR object, which holds the torch.optim.SGD object
(whose param_groups hold the ctx Parameter). The wrapper below has Dassl's attribute names.
"""
import json
import os
import struct
from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, _LRScheduler

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, 'test', 'fixtures', 'locoop-tiny')


def read_safetensors(path):
    with open(path, 'rb') as f:
        raw = f.read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, e in header.items():
        if name != '__metadata__':
            a, b = e['data_offsets']
            dt = {'F32': np.float32, 'F64': np.float64}[e['dtype']]
            out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt).reshape(e['shape']).copy()
    return out


class ConstantWarmup(_LRScheduler):
    """Dassl's ConstantWarmupScheduler: constant cons_lr for warmup_epoch epochs, then the successor."""

    def __init__(self, optimizer, successor, warmup_epoch, cons_lr, last_epoch=-1):
        self.cons_lr = cons_lr
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return [self.cons_lr for _ in self.base_lrs]

    def step(self, epoch=None):
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step(epoch)


class PromptLearner(nn.Module):
    def __init__(self, ctx, prefix, suffix):
        super().__init__()
        self.ctx = nn.Parameter(torch.from_numpy(ctx))
        self.register_buffer('token_prefix', torch.from_numpy(prefix))
        self.register_buffer('token_suffix', torch.from_numpy(suffix))


def main():
    ref = read_safetensors(os.path.join(FIX, 'reference.safetensors'))
    ctx = ref['ctx_n16']
    torch.manual_seed(0)
    learner = PromptLearner(np.zeros_like(ctx), ref['token_prefix_n16'], ref['token_suffix_n16'])
    optim = torch.optim.SGD(learner.parameters(), lr=0.002, momentum=0.9, weight_decay=5e-4, dampening=0, nesterov=False)
    sched = ConstantWarmup(optim, CosineAnnealingLR(optim, float(50)), 1, 1e-5)
    for _ in range(2):  # two epochs of two steps each, so momentum buffers and the schedule have moved
        for _ in range(2):
            optim.zero_grad()
            (learner.ctx * torch.randn_like(learner.ctx)).sum().backward()
            optim.step()
        sched.step()
    with torch.no_grad():
        learner.ctx.copy_(torch.from_numpy(ctx))  # the reference context, exactly
    state = {
        'state_dict': OrderedDict(learner.state_dict()),
        'epoch': 2,
        'optimizer': optim.state_dict(),
        'scheduler': sched.state_dict(),
        'val_result': 43.75,
    }
    out = os.path.join(FIX, 'dassl', 'prompt_learner')
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, 'model.pth.tar-2')
    torch.save(state, path)
    with open(os.path.join(out, 'checkpoint'), 'w') as f:
        f.write('model.pth.tar-2\n')
    back = torch.load(path)
    assert torch.equal(back['state_dict']['ctx'], torch.from_numpy(ctx))
    print(f'torch {torch.__version__}: wrote {path}; scheduler keys {sorted(back["scheduler"])}')
    print(f'successor {type(back["scheduler"]["successor"]).__name__} holds {type(back["scheduler"]["successor"].optimizer).__name__}')


if __name__ == '__main__':
    main()
