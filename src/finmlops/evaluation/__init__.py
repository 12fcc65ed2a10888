"""finmlops.evaluation"""
