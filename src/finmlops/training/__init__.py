"""finmlops.training"""
