"""Training and evaluation of emobatch's emotion classifier.

From a checkout: python -m training.fit / .evaluate / .ensemble; from an installed wheel the
same modules are emobatch.training.fit / .evaluate / .ensemble (pyproject maps this folder
there). The modules import each other relatively, so both names work.
"""
