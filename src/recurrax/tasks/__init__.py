"""The long-range task suite: generators and loaders that return numpy batches.

Each task module defines ``TASK``, a :class:`Task` registered here by name. Register your own
with :func:`register` (a generator function and a :class:`TaskSpec`), no library edits needed.
"""

from recurrax.tasks import (
    adding,
    char_lm,
    copy_memory,
    dates,
    induction_heads,
    listops,
    mqar,
    selective_copy,
    sequential_images,
    state_tracking,
    transduction,
)
from recurrax.tasks.adding import adding_batch
from recurrax.tasks.registry import get, names, register
from recurrax.tasks.spec import Batch, Task, TaskSpec, batch_rng

for _task in (
    adding.TASK,
    copy_memory.TASK,
    selective_copy.TASK,
    induction_heads.TASK,
    mqar.TASK,
    listops.TASK,
    state_tracking.PARITY_TASK,
    state_tracking.S5_TASK,
    sequential_images.MNIST1D_TASK,
    sequential_images.FASHION_TASK,
    char_lm.TASK,
    transduction.REVERSE_TASK,
    transduction.SORT_TASK,
    transduction.ADDITION_TASK,
    dates.TASK,
):
    register(_task)

__all__ = ["Batch", "Task", "TaskSpec", "adding_batch", "batch_rng", "get", "names", "register"]
