"""Imputing a whole volume: the slice-by-slice synthesis, the request plan (joint or chained), the reliability maps and their error model, and batch imputation over folders of studies."""
