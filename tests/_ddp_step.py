"""One training step through `Trainer.train_step`, run by `test_train.py` as a subprocess: plain `python` (one process)
or under `torchrun` (DDP). Rank 0 saves the gradient of that step (before the optimiser touched anything else) and,
after a second step, the parameters of every rank, so the test can check what DDP must guarantee:

- the all-reduced gradient of one step equals the single-process gradient of the whole batch (to float rounding);
- every rank holds the same weights after the optimiser step;
- the ranks' random streams differ (dropout masks and gradient-penalty draws are independent across processes).

Usage: python tests/_ddp_step.py CONFIG_JSON OUT_FILE
"""
import json, os, sys

import torch
import torch.distributed as dist

from hybrid_pose.train import TrainConfig, Trainer

cfg = TrainConfig(**json.loads(sys.argv[1]))
tr = Trainer(cfg)
batches = iter(tr._loader())
tr.train_step(next(batches))
grads = {k: p.grad.detach().clone() for k, p in tr.net.named_parameters() if p.grad is not None}
tr.train_step(next(batches))
params = {k: p.detach().clone() for k, p in tr.net.named_parameters()}
draws = torch.rand(4)                               # what dropout and the gradient penalty would draw next
if tr.world > 1:                                    # every rank's weights and draws, gathered on rank 0
    gathered, gathered_draws = [None] * tr.world, [None] * tr.world
    dist.all_gather_object(gathered, params); dist.all_gather_object(gathered_draws, draws)
else:
    gathered, gathered_draws = [params], [draws]
if tr.rank == 0:
    torch.save(dict(world=tr.world, grads=grads, params=gathered, draws=gathered_draws, local_batch=tr.local_batch,
                    sync_bn=tr.sync_bn), sys.argv[2])
if tr.world > 1: dist.barrier()                     # the file is written before any rank leaves
# Leave without the interpreter's teardown: on a loaded 2-core machine, tearing down gloo's connection threads
# (destroy_process_group, or garbage collection at exit) aborted a rank about once in ten runs ("terminate called
# without an active exception", SIGABRT) after the work above was done and saved.
sys.stdout.flush(); sys.stderr.flush()
os._exit(0)
