"""kninfer: scikit-learn, MLflow and PyTorch models as scale-to-zero KServe/Knative services.

Importing this package is cheap on purpose: nothing here imports kserve, a model framework,
or builds an app. The CLI (`kninfer.cli`) decides what to import for the model being served.
"""

__version__ = "0.1.0"
