"""vlguard: measure and fix the safety of vision-language models.

Data flows one way: data → samples → generations → judgments → metrics → report.
Training: data → mixture → trainer → checkpoint.
"""

__version__ = "0.1.0"
