"""Layer importance by representation erasure (the paper's Fig. 2; Li, Monroe & Jurafsky 2016).

For every Linear layer of the transfer groups (fc1..fcK) and every output neuron, the neuron is erased
(its output set to zero, so its ReLU activation is zero) and the model is re-evaluated on held-out data
with RecBole's evaluator. The importance of a neuron is the relative drop of HR@10 (and NDCG@10):
``(metric_full - metric_erased) / metric_full``. Per-neuron scores favour narrow layers (each neuron
is a larger share of a narrow layer), so a whole-layer erasure is reported beside them.

Faithfulness: the paper measures the drop of the log-likelihood of the correct label; we measure the
drop of the ranking metrics of the evaluation protocol (the spec allows either).
"""

import numpy as np

from ...errors import TransferConfigError
from ...trainer import TransferTrainer
from ...report import markdown
from .strategy import layer_groups


def _evaluate(trainer, eval_data):
    result = trainer.evaluate(eval_data, load_best_model=False)
    return {k: float(v) for k, v in result.items()}


def _erased(module, index=None):
    def hook(_module, _inputs, output):
        output = output.clone()
        if index is None:
            output.zero_()
        else:
            output[..., index] = 0.0
        return output

    return module.register_forward_hook(hook)


def layer_importance(config, model, eval_data, metric="hit@10"):
    """Rows per layer group: neuron-drop statistics and the whole-layer drop, for ``metric``."""
    groups = layer_groups(model, config["transfer_containers"])
    if not groups:
        raise TransferConfigError(
            f"importance: {type(model).__name__} declares no layer groups fc1..fcK (transfer_containers); "
            f"representation erasure applies to layer-transfer models such as TransferMLP, NeuMF, DMF"
        )
    model.eval()
    trainer = TransferTrainer(config, model, stage="analysis")
    base = _evaluate(trainer, eval_data)
    rows = []
    for group, names in groups.items():
        for name in names:
            module = model.get_submodule(name)
            drops = []
            for j in range(module.out_features):
                handle = _erased(module, j)
                try:
                    value = _evaluate(trainer, eval_data)[metric]
                finally:
                    handle.remove()
                drops.append((base[metric] - value) / base[metric] if base[metric] else 0.0)
            handle = _erased(module)
            try:
                whole = _evaluate(trainer, eval_data)[metric]
            finally:
                handle.remove()
            drops = np.asarray(drops)
            rows.append({
                "group": group, "module": name, "neurons": module.out_features,
                "mean": float(drops.mean()), "median": float(np.median(drops)), "max": float(drops.max()),
                "important_share": float((drops > 0.01).mean()),
                "layer": (base[metric] - whole) / base[metric] if base[metric] else 0.0,
            })
    return base, rows


def importance_table(base, rows, metric="hit@10"):
    header = f"Representation erasure on held-out data (base {metric} = {base[metric]:.4f}); drops are relative"
    lines = [[r["group"], r["module"], r["neurons"], f"{100 * r['mean']:+.2f}%", f"{100 * r['median']:+.2f}%",
              f"{100 * r['max']:+.2f}%", f"{100 * r['important_share']:.0f}%", f"{100 * r['layer']:+.1f}%"] for r in rows]
    return header + "\n" + markdown(["group", "module", "neurons", "mean drop", "median", "max", "share > 1%", "whole layer"],
                                     lines)


def importance_report(config, model, valid_data):
    """``--importance CHECKPOINT``: the erasure table of a trained model on its validation data."""
    return importance_table(*layer_importance(config, model, valid_data))
