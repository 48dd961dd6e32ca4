"""Data parallelism of the examples: the `--distribute` option and what it starts.

`--distribute` (or `--distribute local`) trains on every device of this
machine: `tf.distribute.MirroredStrategy` on TensorFlow (the GPUs, else the
logical CPUs), `keras.distribution.DataParallel` on JAX. `--distribute
multiworker` trains on several machines with TensorFlow's
`MultiWorkerMirroredStrategy`: start the same command on every machine, each
with its own `TF_CONFIG` (README, "Training on several devices or
machines"). Either way the batch size is the global one, split across the
replicas, and every BatchNormalization takes its statistics over the global
batch (`keras_attention.models.synchronize_batch_norm`), so a step gives what
one device gives on the whole batch.
"""

import contextlib
import json
import os
import sys

import tf_onednn

os.environ.update(tf_onednn.environment())  # before Keras imports TensorFlow

import keras

from keras_attention import models

MODES = ("local", "multiworker")


def add_argument(parser):
    """Adds `--distribute [local|multiworker]` to an argparse parser."""
    parser.add_argument(
        "--distribute",
        nargs="?",
        const="local",
        default=None,
        choices=MODES,
        help="Data-parallel training. local (the default of a bare --distribute): every "
        "device of this machine, tf.distribute.MirroredStrategy on TensorFlow, "
        "keras.distribution.DataParallel on JAX. multiworker: TensorFlow's "
        "MultiWorkerMirroredStrategy across the machines listed in TF_CONFIG (run the "
        "same command on each). BatchNormalization uses the global batch's statistics.",
    )


class Distribution:
    """What `start` returns: the scope to build models in, and the run's place in it.

    Train inside `with distribution:` (on JAX it sets the `DataParallel`
    distribution, and unsets it on leaving, so later predictions run on one
    device) and build and compile models inside `with distribution.scope():`.

    Attributes:
        mode: None, "local" or "multiworker".
        scope: a function returning the context to build and compile models in.
        replicas: int, the replicas that share each global batch.
        task: None on the chief (and without multiworker), else e.g. "worker1".
    """

    def __init__(self, mode, scope=contextlib.nullcontext, replicas=1, task=None, jax=None):
        self.mode, self.scope, self.replicas, self.task = mode, scope, replicas, task
        self._jax = jax  # JAX's keras.distribution.DataParallel, set while inside `with`

    def folder(self, path):
        """The run folder of this process: `path` on the chief, `path/<task>` elsewhere.

        The workers of a multi-worker run all save checkpoints and models (a
        save reads every variable); on a shared file system each writes its
        own copy, so none overwrites another's and each resumes from its own.
        """
        return path if self.task is None else os.path.join(path, self.task)

    def prepare(self, model):
        """`model`, with synchronized BatchNormalization when distributed."""
        return models.synchronize_batch_norm(model) if self.mode else model

    def __enter__(self):
        if self._jax is not None:
            keras.distribution.set_distribution(self._jax)
        return self

    def __exit__(self, *exc_info):
        if self._jax is not None:
            keras.distribution.set_distribution(None)


def start(mode):
    """The `Distribution` of `--distribute mode` (None: one device).

    Call it before anything else touches TensorFlow: a multi-worker strategy
    configures the runtime's collectives, which TensorFlow allows only before
    its devices are initialised.
    """
    if mode not in (None, *MODES):
        raise ValueError(f"`--distribute` must be one of {MODES}. Received: {mode!r}")
    if mode is None:
        return Distribution(None)
    backend = keras.backend.backend()
    if mode == "multiworker":
        if backend != "tensorflow":
            raise ValueError(
                "--distribute multiworker is TensorFlow's MultiWorkerMirroredStrategy; "
                f"this run has the {backend!r} backend (set KERAS_BACKEND=tensorflow)."
            )
        return _multiworker()
    if backend == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
        distribution = Distribution(mode, strategy.scope, strategy.num_replicas_in_sync)
        trial = (
            "to try it on a CPU, split the CPU into logical devices first with "
            "tf.config.set_logical_device_configuration(cpu, "
            "[tf.config.LogicalDeviceConfiguration()] * 2)"
        )
    elif backend == "jax":
        data_parallel = keras.distribution.DataParallel()
        replicas = len(data_parallel.device_mesh.devices.flatten())
        distribution = Distribution(mode, replicas=replicas, jax=data_parallel)
        trial = (
            "to try it on a CPU, set "
            "XLA_FLAGS=--xla_force_host_platform_device_count=2 before starting"
        )
    else:
        raise ValueError(f"--distribute needs the TensorFlow or JAX backend, not {backend!r}.")
    if distribution.replicas == 1:
        print(
            f"Warning: --distribute found one device, so this run has 1 replica, as "
            f"without --distribute. Data parallelism needs several GPUs; {trial}.",
            file=sys.stderr,
        )
    return distribution


def _multiworker():
    """MultiWorkerMirroredStrategy over the cluster that TF_CONFIG describes."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG", ""))
        task_type, task_id = config["task"]["type"], int(config["task"]["index"])
        cluster = config["cluster"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            "--distribute multiworker reads the cluster from the TF_CONFIG environment "
            'variable, e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}, one index per machine. Received: '
            f"TF_CONFIG={os.environ.get('TF_CONFIG')!r} ({error!r})"
        ) from None
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    _keras_multiworker_fixes()
    # The chief is the "chief" task, or worker 0 where the cluster has none.
    chief = task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in cluster
    )
    task = None if chief else f"{task_type}{task_id}"
    print(
        f"Multi-worker: {task_type} {task_id} of {sum(len(v) for v in cluster.values())} "
        f"tasks, {strategy.num_replicas_in_sync} replica(s) in all"
    )
    return Distribution("multiworker", strategy.scope, strategy.num_replicas_in_sync, task)


def _keras_multiworker_fixes():
    """Lets Keras 3's `fit` run under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Two steps of Keras's TensorFlow trainer fail there, seen on Keras 3.15:
    before the first step it learns the batch's shapes from
    `strategy.reduce("MEAN", batch)`, which a multi-worker strategy cannot do
    on a (features, labels) tuple ("Attempt to convert a value (PerReplica"),
    and after each step it averages the scalar logs with `axis=0` ("Invalid
    reduction dimension 0 for input with 0 dimensions"). Here the shapes come
    from one replica's slice of the batch (the same shapes), and the logs are
    averaged over the replicas with `axis=None`. Nothing else changes.
    """
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    build = trainer.TensorFlowTrainer._maybe_symbolic_build
    if getattr(build, "multiworker_fix", False):
        return

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None and self._distribute_strategy is not None:
            local = self._distribute_strategy.experimental_local_results
            for _, _, batches in iterator:
                data_batch = tree.map_structure(lambda v: local(v)[0], next(batches))
                break
            iterator = None
        return build(self, iterator=iterator, data_batch=data_batch)

    reduce_per_replica = trainer.reduce_per_replica

    def reduce_logs(values, strategy, reduction="auto"):
        if reduction not in ("auto", "mean") or not trainer._collective_all_reduce_multi_worker(
            strategy
        ):
            return reduce_per_replica(values, strategy, reduction)
        distributed = tf.distribute.DistributedValues
        return tree.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=None) if isinstance(v, distributed) else v,
            values,
        )

    _maybe_symbolic_build.multiworker_fix = True
    trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    trainer.reduce_per_replica = reduce_logs
