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
    betainc,
    prior_targets,
    student_t_cdf,
    suggested_y_range,
)
from pfn_transformers.priors.classification import LogisticClassificationPrior
from pfn_transformers.priors.datasets import CSVDatasetPrior, load_dataset_generator, read_table
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
    "GPPrior",
    "GaussianPredictiveMixin",
    "LinearRegressionPrior",
    "LogisticClassificationPrior",
    "MLPPrior",
    "MarkovChainPrior",
    "NormalInverseGammaPrior",
    "PolynomialPrior",
    "StepSinePrior",
    "betainc",
    "load_dataset_generator",
    "prior_targets",
    "read_table",
    "student_t_cdf",
    "suggested_y_range",
]
