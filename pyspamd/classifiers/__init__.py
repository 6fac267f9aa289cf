"""Statistical classifiers: the tokenizer and the chi-square Bayes combiner."""
