"""finmlops.models"""
