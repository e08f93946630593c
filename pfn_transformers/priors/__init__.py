"""A catalogue of ready priors, each a plain class a Hydra YAML can name with ``_target_``.

Every prior subclasses ``pfn_transformers.DataGenerator`` (vectorised
``generate_batch``) and offers ``sample_targets(n)``; continuous ones add
``suggested_y_range``; those with an exact posterior predictive implement
``exact_log_predictive(x, y) -> [B, S]`` (``ExactPosteriorMixin``).

======================================  ===========  ==========================================
prior                                   y            exact predictive
======================================  ===========  ==========================================
LinearRegressionPrior                   continuous   Gaussian (closed form)
PolynomialPrior                         continuous   Gaussian (closed form)
GPPrior (RBF)                           continuous   Gaussian (Cholesky of the full kernel)
GPHyperPrior (Gamma hyperpriors)        continuous   mixture of GPs by quadrature over them
MixturePrior (any same-kind priors)     as theirs    posterior-weighted mixture (when all have one)
MLPPrior, StepSinePrior                 continuous   none
LogisticClassificationPrior             classes      Monte-Carlo reference over prior weights
CoinFlipPrior (Beta-Bernoulli)          {0, 1}       closed form
CategoricalPrior (Dirichlet)            [0, K)       closed form
MarkovChainPrior (Dirichlet rows)       [0, K)       closed form
NormalInverseGammaPrior                 continuous   Student-t (closed form)
CSVDatasetPrior / load_dataset_generator  from file  none
======================================  ===========  ==========================================
"""

from pfn_transformers.priors._common import (
    ContinuousTargetMixin,
    DiscretePredictiveMixin,
    GaussianPredictiveMixin,
    PriorDraw,
    betainc,
    student_t_cdf,
)
from pfn_transformers.priors.classification import LogisticClassificationPrior
from pfn_transformers.priors.datasets import CSVDatasetPrior, load_dataset_generator, read_table
from pfn_transformers.priors.gp_hyper import GPHyperPrior
from pfn_transformers.priors.mixture import ExactMixturePrior, MixturePrior
from pfn_transformers.priors.regression import (
    GPPrior,
    LinearRegressionPrior,
    MLPPrior,
    PolynomialPrior,
    StepSinePrior,
)
from pfn_transformers.priors.unsupervised import (
    CategoricalPrior,
    CoinFlipPrior,
    MarkovChainPrior,
    NormalInverseGammaPrior,
)

__all__ = [
    "CSVDatasetPrior",
    "CategoricalPrior",
    "CoinFlipPrior",
    "ContinuousTargetMixin",
    "DiscretePredictiveMixin",
    "ExactMixturePrior",
    "GPHyperPrior",
    "GPPrior",
    "GaussianPredictiveMixin",
    "LinearRegressionPrior",
    "LogisticClassificationPrior",
    "MLPPrior",
    "MarkovChainPrior",
    "MixturePrior",
    "NormalInverseGammaPrior",
    "PolynomialPrior",
    "PriorDraw",
    "StepSinePrior",
    "betainc",
    "load_dataset_generator",
    "read_table",
    "student_t_cdf",
]
