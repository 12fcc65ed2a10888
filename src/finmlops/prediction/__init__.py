"""finmlops.prediction: batch prediction of CSV folders with a logged, registered or exported model, through the
training feature path, with accuracy and CIs where outcomes are known (``batch``)."""
