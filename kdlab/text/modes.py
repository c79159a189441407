"""LM distillation methods that change what the student trains *on*, not only the loss: sequence-level KD,
on-policy distillation, DDK's domain mixture and the OMP tokenizer transplant. Each is a registered
``LMMethod`` whose ``mode`` tells the trainer and the job what to do (``kdlab.text.losses`` holds the losses)."""
from __future__ import annotations

from kdlab.registry import Param
from kdlab.text.losses import COMMON, ForwardKL, GeneralizedJSD, LMMethod, register_lm_method


@register_lm_method("seq_kd")
class SeqKD(LMMethod):
    """Sequence-level KD: cross-entropy on the teacher's own continuations of corpus prompts.

    Kim & Rush 2016 (EMNLP); the pool of continuations is generated once, the corpus itself is not trained on."""

    mode = "seq_kd"
    uses_teacher_logits = False
    params = {
        "pool": Param(256, "teacher continuations generated once and trained on", int, 1, 100_000),
        "prompt_len": Param(16, "corpus tokens each continuation starts from", int, 1, 4096),
        "gen_temperature": Param(1.0, "sampling temperature of the teacher's continuations", float, 0.0, 5.0,
                                 low_open=True),
    }

    def terms(self, s_logits, t_logits=None):
        return {}


@register_lm_method("on_policy")
class OnPolicy(GeneralizedJSD):
    """On-policy distillation: a fraction lmbda of batches are the student's own continuations.

    GKD (Agarwal et al. 2024, ICLR; TRL's GKDTrainer): those continuations are scored token by token by the
    teacher with the generalised JSD; the rest are corpus batches with the same loss."""

    mode = "on_policy"
    accepts_topk = False
    params = {**GeneralizedJSD.params,
              "lmbda": Param(0.5, "fraction of batches the student generates (on-policy)", float, 0.0, 1.0),
              "gen_temperature": Param(1.0, "sampling temperature of the student's continuations", float, 0.0, 5.0,
                                       low_open=True)}


@register_lm_method("ddk")
class DDK(ForwardKL):
    """DDK: forward KL with a domain mixture that follows the per-domain teacher-student gap.

    Liu et al. 2024 (NeurIPS); the gap is measured on validation text and smoothed (``kdlab.text.ddk``)."""

    mode = "ddk"
    params = {**COMMON,
              "alpha": Param(0.5, "share of the mixture that follows the gap (the rest stays uniform)", float,
                             0.0, 1.0),
              "every": Param(50, "steps between mixture updates", int, 1, 100_000)}


@register_lm_method("omp")
class OMPTransplant(ForwardKL):
    """OMP tokenizer transplant: the teacher gets the student's vocabulary, then forward KL.

    Goddard & Fernandes Neto 2025: training-free, new embeddings are sparse combinations of shared anchor tokens
    (donor space: the no-KD student); then forward-KL distillation as for a same-tokenizer teacher."""

    mode = "omp"
    same_vocab = False
    params = {**COMMON, "anchors": Param(8, "anchor tokens per new token (OMP sparsity k)", int, 1, 256)}


def mode_of(method: LMMethod) -> str:
    """What the method trains on: ``tokens`` (corpus), ``seq_kd``, ``on_policy``, ``ddk``, ``omp`` or ``alm``."""
    default = "alm" if hasattr(method, "terms_from_logprobs") else "tokens"  # ALM: kdlab.text.cross_tokenizer
    return getattr(method, "mode", default)
